"""Who fetched which certificate: the memory behind ``not-picked-up`` and the status page.

Per storage and CSR (its digest): each client address's last fetch (serial, time), when the
current serial replaced an earlier one, and the last error of its issuance. Recorded on the event
loop at each answer (a dictionary update: a cache hit stays cheap); saved with the notifier's state
and pruned of clients not seen for a long time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from acmems.notify.watch import Fetch

__all__ = ["Pickups", "Track"]

_FORGET_AFTER = 400 * 86400.0  # a client not seen for this long is forgotten
_CLIENTS_PER_CERTIFICATE = 64  # beyond this, the longest unseen is forgotten


@dataclass(slots=True)
class Track:
    """What is known of one CSR's certificate beyond its files."""

    fetches: dict[str, Fetch] = field(default_factory=dict)
    renewed: float | None = None  # when the serial ``renewed_serial`` replaced an earlier one
    renewed_serial: int | None = None
    error: str | None = None  # the last failed issuance's error, until one succeeds
    error_time: float | None = None
    updated: float = 0.0  # when ``renewed`` or ``error`` last changed (a cluster keeps the latest)


class Pickups:
    """``(storage, digest) -> Track``."""

    def __init__(self) -> None:
        self.tracks: dict[tuple[str, str], Track] = {}
        self.changed = False
        self.dirty: set[tuple[str, str]] = set()  # changed since the last save (a cluster writes only these)

    def _track(self, storage: str, digest: str) -> Track:
        key = (storage, digest)
        track = self.tracks.get(key)
        if track is None:
            track = self.tracks[key] = Track()
        return track

    def fetched(self, storage: str, digest: str, client: str, serial: int, when: float) -> None:
        track = self._track(storage, digest)
        known = track.fetches.get(client)
        if known is not None and known.serial == serial and when - known.when < 60:
            return  # the same again within a minute: nothing new worth a write
        track.fetches[client] = Fetch(serial, when)
        if len(track.fetches) > _CLIENTS_PER_CERTIFICATE:
            oldest = min(track.fetches, key=lambda c: track.fetches[c].when)
            del track.fetches[oldest]
        self._changed(storage, digest)

    def _changed(self, storage: str, digest: str) -> None:
        self.changed = True
        self.dirty.add((storage, digest))

    def issued(self, storage: str, digest: str, serial: int, when: float, renewal: bool) -> None:
        track = self._track(storage, digest)
        if renewal:
            track.renewed, track.renewed_serial = when, serial
        track.error = track.error_time = None
        track.updated = when
        self._changed(storage, digest)

    def failed(self, storage: str, digest: str, error: str, when: float) -> None:
        track = self._track(storage, digest)
        track.error, track.error_time = error, when
        track.updated = when
        self._changed(storage, digest)

    def get(self, storage: str, digest: str) -> Track | None:
        return self.tracks.get((storage, digest))

    def prune(self, now: float, known: Mapping[str, set[str]]) -> None:
        """Forget certificates no storage has any more (``known``: digests per storage) and
        clients not seen for a long time."""
        for key in list(self.tracks):
            storage, digest = key
            if digest not in known.get(storage, set()):
                del self.tracks[key]
                self.changed = True
                continue
            fetches = self.tracks[key].fetches
            for client in [c for c, f in fetches.items() if now - f.when > _FORGET_AFTER]:
                del fetches[client]
                self.changed = True

    def to_json(self) -> list[dict[str, object]]:
        return [
            {
                "storage": storage,
                "digest": digest,
                "fetches": {c: [f.serial, f.when] for c, f in t.fetches.items()},
                "renewed": t.renewed,
                "renewed_serial": t.renewed_serial,
                "error": t.error,
                "error_time": t.error_time,
                "updated": t.updated,
            }
            for (storage, digest), t in self.tracks.items()
        ]

    @classmethod
    def from_json(cls, raw: object) -> Pickups:
        """Read :meth:`to_json`'s form; raises ``ValueError`` naming what is wrong."""
        pickups = cls()
        if not isinstance(raw, list):
            raise ValueError("pickups must be a list")
        for item in raw:
            if not isinstance(item, dict):
                raise ValueError("each pickup must be an object")
            try:
                fetches = {str(c): Fetch(int(f[0]), float(f[1])) for c, f in dict(item["fetches"]).items()}
                track = Track(
                    fetches,
                    None if item.get("renewed") is None else float(item["renewed"]),
                    None if item.get("renewed_serial") is None else int(item["renewed_serial"]),
                    None if item.get("error") is None else str(item["error"]),
                    None if item.get("error_time") is None else float(item["error_time"]),
                    float(item.get("updated", 0.0)),
                )
                pickups.tracks[(str(item["storage"]), str(item["digest"]))] = track
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                raise ValueError(f"a pickup is malformed: {exc}") from None
        return pickups
