"""``[acme-server]``: acmems as an RFC 8555 server for ACME clients (docs/acme-server.md)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

from acmems.config.ini import Section
from acmems.config.sections import Keys
from acmems.config.values import nonempty, parse_listener, port_number
from acmems.core.settings import AcmeServerSettings, ClusterSettings

__all__ = ["read_acme_server", "resolve_acme_server"]

_NAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def _listener_name(value: str) -> str:
    name = value.strip().lower()
    if not _NAME.fullmatch(name):
        raise ValueError(f"{value!r} is not a DNS name for the listener's certificate")
    return name


def read_acme_server(section: Section, keys: Keys) -> AcmeServerSettings:
    """The section as read; ``verification``, ``ca`` and ``dir`` (needed without ``[cluster]``, or
    with ``name``) are resolved by :func:`resolve_acme_server` once every section is known."""
    listeners = tuple(keys.values("listener", parse_listener))
    if not listeners:
        raise section.error("needs 'listener', host:port of the HTTPS listener for ACME clients (e.g. 0.0.0.0:8555)")
    certificate = keys.value("certificate", lambda v: Path(nonempty(v)), None)
    key = keys.value("key", lambda v: Path(nonempty(v)), None)
    names = tuple(keys.values("name", _listener_name))
    if names and (certificate or key):
        raise section.error("give either 'certificate' and 'key', or 'name' (acmems orders its own), not both")
    if not names:
        keys.together("certificate", "key", (certificate, key))
        if certificate is None:
            raise section.error(
                "needs the listener's 'certificate' and 'key' (PEM files), or 'name = HOST' for acmems to order one"
            )
        for what, path in (("certificate", certificate), ("key", key)):
            assert path is not None
            if not path.is_file():
                raise section.error(f"{what} {path} is not a readable file", key=what)
    directory = keys.value("dir", lambda v: Path(nonempty(v)), None)
    keys.one("verification")
    keys.one("ca")
    return AcmeServerSettings(
        listeners=listeners,
        dir=directory,
        certificate=certificate,
        key=key,
        names=names,
        http01_port=keys.value("http-01-port", port_number, 80),
    )


def resolve_acme_server(
    settings: AcmeServerSettings,
    section: Section,
    cluster: ClusterSettings | None,
    verification: Callable[[], str],
    ca: Callable[[], tuple[str, ...]],
) -> AcmeServerSettings:
    """``dir`` checked against ``[cluster]``; the verification and accounts of ``name`` resolved
    (``verification``, ``ca``: the load's resolvers, raising the configuration's errors)."""
    if settings.dir is None and (cluster is None or settings.names):
        needed = "for accounts and orders" if cluster is None else "for the listener's key"
        raise section.error(f"needs 'dir', the folder {needed} (e.g. /var/lib/acmems/acme-server)")
    if not settings.names:
        return settings
    return dataclasses.replace(settings, verification=verification(), ca=ca())
