"""Several acmems as one, on PostgreSQL (``[cluster]``): see docs/cluster.md.

:class:`ClusterDb` is the connection; :func:`prepare` creates or upgrades the schema and announces
this instance; :class:`DatabaseStore` keeps certificates (``[storage] type = database``),
:class:`SharedTokens` the HTTP-01 tokens, :mod:`acmems.cluster.leases` the one-order-per-CSR leases.
"""

from __future__ import annotations

from acmems.cluster.database import ClusterDb, masked
from acmems.cluster.instances import check_account, database_status, prepare, sweep
from acmems.cluster.store import DatabaseStore
from acmems.cluster.tokens import SharedTokens

__all__ = [
    "ClusterDb",
    "DatabaseStore",
    "SharedTokens",
    "check_account",
    "database_status",
    "masked",
    "prepare",
    "sweep",
]
