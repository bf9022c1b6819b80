"""What the main process and its worker processes tell each other, over the private Unix socket.

- A request a worker cannot answer goes to the main process as it came, plus :data:`PEER_HEADER`
  (the client's address as the worker's socket saw it; believed only on that internal socket).
- Every second a worker POSTs a :class:`WorkerReport` to :data:`REPORT_PATH`: the growth of its
  counters and the certificates asked for. Reports are validated on receipt: a malformed one is a
  ``ValueError`` that names what is wrong.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from acmems.errors import Kind, RequestError

__all__ = ["PEER_HEADER", "REPORT_PATH", "WorkerReport", "forwarded_peer"]

PEER_HEADER = "X-Acmems-Peer"
REPORT_PATH = "/worker-report"


def forwarded_peer(request: web.BaseRequest) -> str:
    """The client's address of a request a worker passed on (the main process's internal socket,
    which only the workers can reach: it is in a 0700 directory)."""
    peer = request.headers.get(PEER_HEADER)
    if not peer:
        raise RequestError("cannot tell the client's address", kind=Kind.BAD_REQUEST)
    return peer


def _count(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a count, not {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """One worker's news since its last report.

    ``ready``: the worker's number, in its first report once it accepts connections; ``requests``:
    answered ``POST /sign`` by HTTP status; ``cache_hits``; ``requested``: digests of certificates
    asked for, by storage name; ``fetched``: who got which certificate (storage, digest, client
    address, serial in hex, Unix time), for the notifier's pickups.
    """

    worker: int
    ready: bool = False
    requests: Mapping[int, float] = field(default_factory=dict)
    cache_hits: float = 0.0
    requested: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fetched: tuple[Fetched, ...] = ()

    @property
    def empty(self) -> bool:
        """Nothing to tell."""
        return not (self.ready or self.requests or self.cache_hits or self.requested or self.fetched)

    def to_json(self) -> bytes:
        """The report as sent."""
        return json.dumps(
            {
                "worker": self.worker,
                "ready": self.ready,
                "requests": {str(k): v for k, v in self.requests.items()},
                "cache_hits": self.cache_hits,
                "requested": {k: list(v) for k, v in self.requested.items()},
                "fetched": [list(f) for f in self.fetched],
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> WorkerReport:
        """Read a report. Raises ``ValueError`` naming the first thing that is wrong."""
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("a report is a JSON object")
        worker, ready = raw.get("worker"), raw.get("ready", False)
        if not isinstance(worker, int) or isinstance(worker, bool) or worker < 1:
            raise ValueError(f"worker must be the worker's number, not {worker!r}")
        if not isinstance(ready, bool):
            raise ValueError("ready must be true or false")
        requests, requested = raw.get("requests", {}), raw.get("requested", {})
        if not isinstance(requests, dict) or not isinstance(requested, dict):
            raise ValueError("requests and requested must be objects")
        statuses: dict[int, float] = {}
        for status, count in requests.items():
            if not (isinstance(status, str) and status.isdigit() and 100 <= int(status) <= 599):
                raise ValueError(f"{status!r} is not an HTTP status")
            statuses[int(status)] = _count(count, f"requests[{status}]")
        digests: dict[str, tuple[str, ...]] = {}
        for storage, names in requested.items():
            if not isinstance(names, list) or not all(isinstance(n, str) and n.isalnum() for n in names):
                raise ValueError(f"requested[{storage!r}] must be a list of digests")
            digests[storage] = tuple(names)
        fetched = _fetched(raw.get("fetched", []))
        return cls(worker, ready, statuses, _count(raw.get("cache_hits", 0), "cache_hits"), digests, fetched)


Fetched = tuple[str, str, str, str, float]  # storage, digest, client address, serial (hex), Unix time
MAX_FETCHED = 10_000  # per report (a second's worth)


def _fetched(raw: object) -> tuple[Fetched, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_FETCHED:
        raise ValueError(f"fetched must be a list of at most {MAX_FETCHED}")
    out = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 5 and all(isinstance(x, str) for x in item[:4])):
            raise ValueError("each fetched entry is [storage, digest, client, serial, time]")
        storage, digest, client, serial, when = item
        try:
            ipaddress.ip_address(client)
            int(serial, 16)
        except ValueError:
            raise ValueError(f"fetched: {client!r} is not an address or {serial!r} not a hex serial") from None
        if not digest.isalnum():
            raise ValueError("fetched: the digest must be hex")
        out.append((storage, digest, client, serial, _count(when, "fetched time")))
    return tuple(out)
