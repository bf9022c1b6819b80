"""acmems configurations for the tests, the demo and the benchmarks, built from one set of pieces
instead of INI texts repeated in each of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.realservices import Bind, Pebble

__all__ = [
    "HMAC_KEY",
    "account",
    "auth",
    "cluster",
    "database_storage",
    "dns01",
    "file_storage",
    "http01",
    "ini",
    "mgmt",
    "section",
]

HMAC_KEY = "A1YP67armNf3cBrecyJHdb035"
Value = str | int | float | Path | Sequence[str]


def section(title: str, keys: Mapping[str, Value | None]) -> str:
    """``[title]`` and its ``key = value`` lines; a list repeats its key, None leaves it out."""
    lines = [f"[{title}]"]
    for key, value in keys.items():
        if value is None:
            continue
        values = [value] if isinstance(value, str | int | float | Path) else list(value)
        lines += [f"{key} = {v}" for v in values]
    return "\n".join(lines) + "\n"


def _dashed(keys: Mapping[str, Value | None]) -> dict[str, Value | None]:
    # Python keyword arguments for keys written with "-" (not for hmac_type / hmac_key).
    return {k.replace("_", "-"): v for k, v in keys.items()}


def ini(*sections: str) -> str:
    """The whole configuration: sections separated by blank lines."""
    return "\n".join(sections)


def account(pebble: Pebble, directory: Path, **extra: Value | None) -> str:
    """``[account]`` for a test Pebble, terms accepted, its CA trusted."""
    keys: dict[str, Value | None] = {
        "acme-server": pebble.directory_url,
        "dir": directory,
        "accept-terms-of-service": "yes",
        "ca-bundle": pebble.ca_bundle,
    }
    return section("account", {**keys, **extra})


def mgmt(port: int, **extra: Value | None) -> str:
    """``[mgmt]`` listening on 127.0.0.1:``port``; ``extra`` keys with ``_`` for ``-``."""
    return section("mgmt", {"listener": f"127.0.0.1:{port}", **_dashed(extra)})


def http01(name: str, port: int) -> str:
    """An http01 verification on 127.0.0.1:``port`` (the port the CA checks)."""
    return section(f'verification "{name}"', {"type": "http01", "listener": f"127.0.0.1:{port}"})


def dns01(name: str, bind: Bind | None = None, **extra: Value | None) -> str:
    """A dns01-dnsUpdate verification, with the test BIND's server and TSIG key if given."""
    keys: dict[str, Value | None] = {"type": "dns01-dnsUpdate"}
    if bind is not None:
        keys |= {"dns-server": f"127.0.0.1:{bind.port}", "tsig-key-file": bind.key_file}
    return section(f'verification "{name}"', {**keys, **_dashed(extra)})


def file_storage(name: str, directory: Path) -> str:
    """A file storage in ``directory``."""
    return section(f'storage "{name}"', {"type": "file", "directory": directory})


def database_storage(name: str, **extra: Value | None) -> str:
    """A storage in the cluster database."""
    return section(f'storage "{name}"', {"type": "database", **_dashed(extra)})


def cluster(database: str, password_file: Path | None = None, name: str | None = None) -> str:
    """``[cluster]`` on ``database`` (a libpq URI)."""
    return section("cluster", {"database": database, "password-file": password_file, "name": name})


def auth(
    name: str,
    domains: Sequence[str],
    *,
    ip: str | None = None,
    hmac_key: str | None = None,
    **extra: Value | None,
) -> str:
    """An auth block for ``domains``, by source address and/or an HMAC-SHA256 key."""
    keys: dict[str, Value | None] = {"ip": ip}
    if hmac_key is not None:
        keys |= {"hmac_type": "sha256", "hmac_key": hmac_key}
    return section(f'auth "{name}"', {**keys, "domain": list(domains), **extra})
