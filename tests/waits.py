"""How long a test waits for an event, in one place.

Every wait is for the event itself (a log line, a record, a counter, an accepted connection), never
a sleep: the limit only bounds a failure, so a passing test takes as long as the event does. Each
limit is what the event takes on an idle machine, times :data:`SLACK`, plus what acmems itself
waits before it acts (a lease's time, a retry's delay), taken from acmems' own constants. The CI
machine has 2 cores, shared by the suite, the services it starts (Pebble, BIND, PostgreSQL, nginx,
Chromium) and whatever else runs there.
"""

from __future__ import annotations

from acmems.cluster.instances import ALIVE_SECONDS
from acmems.cluster.leases import LEASE_SECONDS
from acmems.cluster.notify_store import ADOPT_EVERY
from acmems.issuance.renewer import RETRY_FIRST

__all__ = [
    "ADOPTION",
    "DATABASE_BACK",
    "ISSUANCE",
    "LEASE_LAPSE",
    "PROMPT",
    "RENEWAL_RETRY",
    "RETRY",
    "SERVICE_START",
    "SLACK",
    "START",
    "after",
]

#: how many times longer than on an idle machine anything may take on a loaded 2-core one
SLACK = 4.0


def after(idle_seconds: float, acmems_waits: float = 0.0) -> float:
    """The limit for an event that takes ``idle_seconds`` on an idle machine once acmems has waited
    ``acmems_waits`` (a lease, a retry delay) on purpose."""
    return acmems_waits + idle_seconds * SLACK


#: a real service (BIND, Pebble, nginx, PostgreSQL, Knot, PowerDNS) accepting connections: ~1-3 s idle
SERVICE_START = after(5.0)
#: acmems answering on its management listener (the account checked at the CA first): ~1-2 s idle
START = after(7.5)
#: something acmems does at once: a reload, a log line after a request, a worker's report (every 1 s)
PROMPT = after(2.5)
#: one order end to end at Pebble without its validation sleep (~0.5 s idle; a DNS-01 one ~2 s)
ISSUANCE = after(10.0)
#: an event receiver's retry: the first after 5 s (acmems.notify.outbox), then doubling
RETRY = after(5.0, 5.0)
#: a lease another instance held lapses and is taken over (its time, then the taker's next try)
LEASE_LAPSE = after(5.0, LEASE_SECONDS)
#: an instance that is gone is known to be gone, and its rows adopted by another
ADOPTION = after(5.0, ALIVE_SECONDS + ADOPT_EVERY)
#: the cluster database answers again after an outage (the pool reconnects within its timeout)
DATABASE_BACK = after(5.0, 5.0)
#: a background renewal that failed is tried again (the renewer's first backoff)
RENEWAL_RETRY = after(5.0, RETRY_FIRST)
