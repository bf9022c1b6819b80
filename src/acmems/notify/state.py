"""Where the notifier keeps the conditions in force (their marks) and the pickups: ``notify-state.json``
for one instance (:class:`FileState`; ``acmems list`` reads it too), the cluster database for a
cluster (:class:`acmems.cluster.notify_store.DatabaseState`)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Protocol

from acmems.fileio import write_atomic
from acmems.notify.pickups import Pickups
from acmems.notify.watch import Mark

__all__ = ["STATE_FILE", "FileState", "NotifyState", "read_state", "write_state"]

log = logging.getLogger("acmems.notify")
STATE_FILE = "notify-state.json"  # in the default account's directory


def write_state(path: Path, marks: dict[str, Mark], pickups: Pickups) -> None:
    """Save atomically (0600); a failure is logged, not raised (the next pass tries again)."""
    state = {"marks": {k: [m.began, m.sent] for k, m in marks.items()}, "pickups": pickups.to_json()}
    try:
        write_atomic(path, json.dumps(state).encode(), mode=0o600)
    except OSError as exc:
        log.error("notify: cannot save %s: %s", path, exc)


def read_state(path: Path) -> tuple[dict[str, Mark], Pickups]:
    """The marks and pickups saved in ``path`` (none if it does not exist or cannot be read: logged)."""
    if not path.exists():
        return {}, Pickups()
    try:
        raw = json.loads(path.read_text())
        marks = {str(k): Mark(float(v[0]), float(v[1])) for k, v in dict(raw["marks"]).items()}
        return marks, Pickups.from_json(raw["pickups"])
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        log.error("notify: cannot read %s (%s); starting without it", path, exc)
        return {}, Pickups()


class NotifyState(Protocol):
    """The notifier's memory between passes and restarts."""

    async def load(self) -> tuple[dict[str, Mark], Pickups]:
        """At start: the marks and pickups saved."""
        ...

    async def save(self, marks: dict[str, Mark] | None, pickups: Pickups) -> None:
        """Save what changed (``marks`` None: this instance does not run the watch). Never raises."""
        ...

    async def refresh(self, pickups: Pickups) -> Pickups:
        """The pickups of every instance (``pickups``: this one's, saved just before)."""
        ...

    async def may_watch(self) -> bool:
        """Whether this instance runs the watch now (one instance of a cluster at a time)."""
        ...

    async def watch_marks(self) -> dict[str, Mark] | None:
        """The marks to go on from when the watch moved here from another instance (else None)."""
        ...

    async def close(self, marks: dict[str, Mark] | None, pickups: Pickups) -> None:
        """This process stops: save the last changes (where that need not wait for a store known to
        be away) and give up what is held (a cluster: another instance may watch at once)."""
        ...


class FileState:
    """``notify-state.json``, written atomically after each pass that changed something."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._marks: dict[str, Mark] = {}  # as last saved: one file holds both

    async def load(self) -> tuple[dict[str, Mark], Pickups]:
        self._marks, pickups = await asyncio.to_thread(read_state, self.path)
        return dict(self._marks), pickups

    async def save(self, marks: dict[str, Mark] | None, pickups: Pickups) -> None:
        if marks is None and not pickups.dirty:
            return
        if marks is not None:
            self._marks = dict(marks)
        pickups.dirty.clear()
        await asyncio.to_thread(write_state, self.path, self._marks, pickups)

    async def refresh(self, pickups: Pickups) -> Pickups:
        return pickups  # one instance sees every fetch itself

    async def may_watch(self) -> bool:
        return True

    async def watch_marks(self) -> dict[str, Mark] | None:
        return None

    async def close(self, marks: dict[str, Mark] | None, pickups: Pickups) -> None:
        await self.save(marks, pickups)
