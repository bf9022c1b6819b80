"""``GET /status``: every certificate on one HTML page rendered here (no JavaScript, no outside
assets), problems first, 100 rows a page (``?page=N``, ``?state=overdue``). Pure rendering of
:class:`acmems.notify.status.StatusRow` values; each row has an inline-SVG timeline (issued, the
renewal window, now, expiry)."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from acmems.notify.status import STATES, StatusList, StatusRow

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
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{background:#f4f4f4}.state{font-weight:600;color:#fff;border-radius:3px;padding:1px 6px;white-space:nowrap}
.err{color:#a00;font-family:monospace;font-size:12px;max-width:28em;word-break:break-word}
.sum span{margin-right:1em}nav a{margin-right:.6em}td.t{white-space:nowrap}
"""


def _when(moment: datetime | float | None) -> str:
    if moment is None:
        return "-"
    value = datetime.fromtimestamp(moment, UTC) if isinstance(moment, int | float) else moment.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _timeline(row: StatusRow, now: datetime) -> str:
    entry = row.entry
    start, end = entry.not_before.timestamp(), entry.not_after.timestamp()
    span = max(end - start, 1.0)

    # the lifetime spans 80 % of the width; what lies beyond expiry (now, if later) the rest
    def x(moment: float) -> float:
        return round(4 + min(max((moment - start) / span, -0.02), 1.2) * (_WIDTH - 48), 1)

    renew, current = x(entry.renew_at.timestamp()), x(now.timestamp())
    expiry, issued = x(end), x(start)
    return (
        f'<svg width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="issued {_when(entry.not_before)}, renewal from {_when(entry.renew_at)}, '
        f'expires {_when(entry.not_after)}">'
        f'<rect x="{issued}" y="7" width="{max(expiry - issued, 1)}" height="4" fill="#9bc"/>'
        f'<rect class="window" x="{renew}" y="4" width="{max(expiry - renew, 1)}" height="10" '
        'fill="#f0c36d" opacity=".8"/>'
        f'<line class="issued" x1="{issued}" y1="2" x2="{issued}" y2="16" stroke="#555"/>'
        f'<line class="expiry" x1="{expiry}" y1="2" x2="{expiry}" y2="16" stroke="#b00020" stroke-width="2"/>'
        f'<line class="now" x1="{current}" y1="0" x2="{current}" y2="18" stroke="#000" stroke-width="2"/>'
        "</svg>"
    )


def _row(row: StatusRow, now: datetime) -> str:
    e = html.escape
    entry = row.entry
    fetched = "-" if row.last_fetch is None else f"{_when(row.last_fetch[0])}<br>{e(row.last_fetch[1])}"
    cells = [
        f'<td class="names">{e(", ".join(entry.names))}</td>',
        f"<td>{e(entry.profile or '-')}</td>",
        f'<td><span class="state" style="background:{_COLOURS[row.state]}">{e(row.state)}</span></td>',
        f'<td class="t">{_when(entry.not_after)}</td>',
        f'<td class="t">{_when(entry.renew_at)}</td>',
        f'<td class="t">{fetched}</td>',
        f'<td class="err">{e(row.error or "")}</td>',
        f"<td>{_timeline(row, now)}</td>",
    ]
    return f'<tr data-state="{e(row.state)}" data-storage="{e(row.storage)}">' + "".join(cells) + "</tr>"


def render_status(status: StatusList, now: datetime, page: int = 1, state: str | None = None) -> bytes:
    """The page ``page`` (from 1) of ``status``, only ``state`` if given."""
    counts = status.counts
    pages = max(1, -(-status.total(state) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    chunk = [status.row(*item) for item in status.select(state, (page - 1) * PAGE_SIZE, page * PAGE_SIZE)]
    e = html.escape
    summary = "".join(
        f'<span><a href="?state={e(s)}">{e(s)}</a>: <b class="count" data-state="{e(s)}">{counts.get(s, 0)}</b></span>'
        for s in STATES
    )
    query = f"&amp;state={e(state)}" if state else ""
    nav = "".join(
        f'<a href="?page={p}{query}">{p}</a>' if p != page else f"<b>{p}</b>"
        for p in range(max(1, page - 5), min(pages, page + 5) + 1)
    )
    columns = ("names", "profile", "state", "not after (UTC)", "renewal from", "last fetched", "last error", "timeline")
    head = "".join(f"<th>{h}</th>" for h in columns)
    body = "\n".join(_row(row, now) for row in chunk) or '<tr><td colspan="8">no certificates</td></tr>'
    text = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>acmems status</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>acmems: {len(status)} certificate(s)</h1>"
        f'<p class="sum">{summary} <span>as of {_when(now)} UTC</span></p>'
        f"<nav>page {page} of {pages}: {nav}</nav>"
        f'<table id="certificates"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'
        "</body></html>"
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
