"""``notify-state.json``: the conditions in force (their marks) and the pickups, saved by the
server and read by it at start and by ``acmems list``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from acmems.fileio import write_atomic
from acmems.notify.pickups import Pickups
from acmems.notify.watch import Mark

__all__ = ["STATE_FILE", "read_state", "write_state"]

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
