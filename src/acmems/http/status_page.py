"""``GET /status``: every certificate on one HTML page (no JavaScript, no outside assets),
problems first, 100 rows a page (``?page=N``, ``?state=overdue``). The page is the Jinja2 template
``templates/status.html`` (autoescaped); this module computes what it shows of
:class:`acmems.notify.status.StatusRow` values, each with an inline-SVG timeline (issued, the
renewal window, now, expiry)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web

from acmems.notify.status import STATES, StatusList, StatusRow

if TYPE_CHECKING:
    import jinja2

__all__ = ["PAGE_SIZE", "render_status", "status_handler"]

PAGE_SIZE = 100
_WIDTH, _HEIGHT = 220, 18
_COLOURS = {
    "expired": "#b00020",
    "overdue": "#d9480f",
    "failed": "#c2255c",
    "renewing": "#1971c2",
    "renewal due": "#e8a200",
    "ok": "#2f9e44",
}
_COLUMNS = ("names", "profile", "state", "not after (UTC)", "renewal from", "last fetched", "last error", "timeline")


@functools.cache
def _template() -> jinja2.Template:
    # Built on the first request for the page: an acmems nobody asks for /status never loads it.
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("acmems.http", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
    )
    return environment.get_template("status.html")


def _when(moment: datetime | float | None) -> str:
    if moment is None:
        return "-"
    value = datetime.fromtimestamp(moment, UTC) if isinstance(moment, int | float) else moment.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class _Timeline:
    """Where the marks of one row's SVG timeline stand (x coordinates)."""

    issued: float
    renew: float
    expiry: float
    now: float
    label: str
    width: int = _WIDTH
    height: int = _HEIGHT


def _timeline(row: StatusRow, now: datetime) -> _Timeline:
    entry = row.entry
    start, end = entry.not_before.timestamp(), entry.not_after.timestamp()
    span = max(end - start, 1.0)

    # the lifetime spans 80 % of the width; what lies beyond expiry (now, if later) the rest
    def x(moment: float) -> float:
        return round(4 + min(max((moment - start) / span, -0.02), 1.2) * (_WIDTH - 48), 1)

    label = f"issued {_when(entry.not_before)}, renewal from {_when(entry.renew_at)}, expires {_when(entry.not_after)}"
    return _Timeline(x(start), x(entry.renew_at.timestamp()), x(end), x(now.timestamp()), label)


def _row(row: StatusRow, now: datetime) -> dict[str, object]:
    entry = row.entry
    return {
        "state": row.state,
        "storage": row.storage,
        "names": ", ".join(entry.names),
        "profile": entry.profile or "-",
        "colour": _COLOURS[row.state],
        "not_after": _when(entry.not_after),
        "renew_at": _when(entry.renew_at),
        "fetched": None if row.last_fetch is None else (_when(row.last_fetch[0]), row.last_fetch[1]),
        "error": row.error or "",
        "timeline": _timeline(row, now),
    }


def render_status(status: StatusList, now: datetime, page: int = 1, state: str | None = None) -> bytes:
    """The page ``page`` (from 1) of ``status``, only ``state`` if given."""
    pages = max(1, -(-status.total(state) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    chunk = [status.row(*item) for item in status.select(state, (page - 1) * PAGE_SIZE, page * PAGE_SIZE)]
    text = _template().render(
        total=len(status),
        states=STATES,
        counts=status.counts,
        now=_when(now),
        page=page,
        pages=pages,
        nav=range(max(1, page - 5), min(pages, page + 5) + 1),
        state=state,
        columns=_COLUMNS,
        rows=[_row(row, now) for row in chunk],
    )
    return text.encode()


def status_handler(
    rows: Callable[[datetime], StatusList],
) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """``GET /status`` (``?page=N``, ``?state=NAME``) of the rows ``rows(now)`` gives."""

    async def status_page(request: web.BaseRequest) -> web.StreamResponse:
        now = datetime.now(UTC)
        try:
            page = int(request.query.get("page", "1"))
        except ValueError:
            page = 1
        state = request.query.get("state")
        body = render_status(rows(now), now, page, state if state in STATES else None)
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    return status_page
