"""The one seam between "files" and "PostgreSQL".

:class:`~acmems.backends.base.Backend` hands out everything that is either kept by this process and
its files (``files``: one acmems, nothing to run) or shared through the cluster database
(``postgres``: ``[cluster]``): certificate stores and their claims, HTTP-01 token publishing, the
DNS-01 journal, the rate log, the CA's pauses, the notify outbox and state, the instance's identity
and health. :func:`make_backend` is the only place that looks at ``[cluster]``; callers ask the
backend and never branch on which one it is. ``postgres`` is imported only for a cluster, so one
acmems with files never loads psycopg. It imports :mod:`acmems.storage`, :mod:`acmems.notify`,
:mod:`acmems.challenges`, :mod:`acmems.core` and (``postgres`` alone) :mod:`acmems.cluster`.
"""

from __future__ import annotations

from acmems.backends.base import Backend, Role
from acmems.core.settings import Settings

__all__ = ["Backend", "Role", "make_backend"]


def make_backend(settings: Settings, role: Role = Role.SERVER) -> Backend:
    """The backend of ``settings``: PostgreSQL with ``[cluster]``, else files.

    ``role`` says who opens it: the server (schema upgraded, instance announced), a worker process
    (a small pool) or a command (for its length: no listening connection, the schema as it asks).
    """
    if settings.cluster is not None:
        from acmems.backends.postgres import PostgresBackend  # psycopg only for a cluster

        return PostgresBackend(settings.cluster, role)
    from acmems.backends.files import FileBackend

    return FileBackend()
