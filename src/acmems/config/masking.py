"""A ``[cluster] database`` connection string as logs and ``acmems check`` may show it."""

from __future__ import annotations

__all__ = ["masked"]

_SECRET_KEYS = ("password", "sslpassword", "sslkey", "sslcert", "sslrootcert", "sslcrl", "passfile")


def masked(database: str) -> str:
    """The connection string for logs and ``acmems check``: host, port, database and user only;
    the password and every TLS file are shown as ``***``."""
    # psycopg's own parser, imported here: only a configuration with [cluster] has one to show
    import psycopg
    from psycopg import conninfo

    try:
        parts = conninfo.conninfo_to_dict(database)
    except psycopg.Error:
        return "(unreadable connection string)"
    shown = []
    for key in ("host", "hostaddr", "port", "dbname", "user", "sslmode"):
        if parts.get(key):
            shown.append(f"{key}={parts[key]}")
    shown += [f"{key}=***" for key in _SECRET_KEYS if parts.get(key)]
    return " ".join(shown) or "(libpq defaults)"
