"""The readers of single configuration sections: each takes a section's entries and returns its
frozen settings, or raises :class:`ConfigError` naming file, line, section and key. Used by
:mod:`acmems.config`, which resolves the references between sections."""

from __future__ import annotations

import functools
import os
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from acmems.config.ini import Entry, Section
from acmems.config.values import (
    database_conninfo,
    domain_glob,
    eab_hmac_key,
    email_address,
    hash_name,
    instance_name,
    ip_network,
    log_level,
    non_negative_number,
    nonempty,
    parse_bool,
    parse_listener,
    parse_size,
    positive_int,
    positive_number,
    profile_name,
    read_secret_file,
    worker_count,
)
from acmems.core.rate_limits import LETSENCRYPT, Limit, RateLimits, parse_limit
from acmems.core.settings import (
    LETSENCRYPT_STAGING,
    LOOPBACK,
    AccountSettings,
    AuthSettings,
    ClusterSettings,
    DatabaseStorage,
    FileStorage,
    Listener,
    LoggingSettings,
    MgmtSettings,
    NoneStorage,
    StorageSettings,
)
from acmems.errors import ConfigError

__all__ = [
    "DEFAULT_HTTP01_LISTENERS",
    "Keys",
    "RawAuth",
    "block_profile",
    "read_account",
    "read_auth",
    "read_cluster",
    "read_logging",
    "read_mgmt",
    "read_storage",
]

T = TypeVar("T")


class Keys:
    """Access to one section's entries that records which keys were used, for warnings."""

    def __init__(self, section: Section) -> None:
        self.section = section
        self.known: set[str] = set()

    def _error(self, entry: Entry, message: str) -> ConfigError:
        return self.section.error(message, key=entry.key, entry=entry)

    def all(self, key: str) -> list[Entry]:
        self.known.add(key)
        return [e for e in self.section.entries if e.key == key]

    def one(self, key: str) -> Entry | None:
        entries = self.all(key)
        if len(entries) > 1:
            first = entries[0]
            raise self._error(
                entries[1],
                f"may be given only once (first at {first.file}:{first.line})",
            )
        return entries[0] if entries else None

    def value(self, key: str, convert: Callable[[str], T], default: T) -> T:
        entry = self.one(key)
        if entry is None:
            return default
        return self.convert(entry, convert)

    def values(self, key: str, convert: Callable[[str], T]) -> list[T]:
        return [self.convert(e, convert) for e in self.all(key)]

    def convert(self, entry: Entry, convert: Callable[[str], T]) -> T:
        try:
            return convert(entry.value)
        except ValueError as exc:
            raise self._error(entry, str(exc)) from None

    def together(self, first: str, second: str, given: tuple[object, object]) -> None:
        """Raise unless both keys or neither are given (``given``: their values)."""
        if (given[0] is None) != (given[1] is None):
            entry = self.one(first) or self.one(second)
            assert entry is not None
            raise self._error(entry, f"{first} and {second} must be given together")

    def warn_unknown(self, warnings: list[str]) -> None:
        for entry in self.section.entries:
            if entry.key not in self.known:
                warnings.append(
                    f"{entry.file}:{entry.line}: [{self.section.title}] unknown key {entry.key!r} "
                    f"is ignored (known: {', '.join(sorted(self.known))})"
                )
                self.known.add(entry.key)


def read_cluster(keys: Keys) -> ClusterSettings:
    """``[cluster]``: ``database`` (a libpq URI or key=value string), ``password-file``, ``name``."""
    entry = keys.one("database")
    if entry is None:
        raise keys.section.error("needs 'database', a libpq URI (postgresql://user@host/db) or key=value string")
    database = keys.convert(entry, database_conninfo)
    password = None
    password_entry = keys.one("password-file")
    if password_entry is not None:
        password = keys.convert(password_entry, lambda v: read_secret_file(Path(nonempty(v))))
    return ClusterSettings(database, password, keys.value("name", instance_name, socket.gethostname() or "acmems"))


def read_account(keys: Keys) -> AccountSettings:
    server = keys.value("acme-server", nonempty, LETSENCRYPT_STAGING)
    if not re.match(r"https?://", server):
        entry = keys.one("acme-server")
        assert entry is not None
        raise keys._error(entry, f"{server!r} is not an http(s) URL of an ACME directory")
    directory = keys.value("dir", lambda v: Path(nonempty(v)), None)
    tos = []
    for entry in keys.all("accept-terms-of-service"):
        value = entry.value
        if value.lower() not in ("yes", "no", "true", "false") and not re.match(r"https?://", value):
            raise keys._error(entry, f"{value!r} is neither yes, no nor the URL of the terms")
        tos.append("yes" if value.lower() in ("yes", "true") else value)
    ca_bundle = keys.value("ca-bundle", lambda v: Path(nonempty(v)), None)
    if ca_bundle is None and os.environ.get("ACME_CAFILE"):
        ca_bundle = Path(os.environ["ACME_CAFILE"])
    emails = keys.values("email", email_address)
    eab_kid = keys.value("eab-kid", nonempty, None)
    eab_key = keys.value("eab-hmac-key", eab_hmac_key, None)
    keys.together("eab-kid", "eab-hmac-key", (eab_kid, eab_key))
    return AccountSettings(
        rate_limits=_rate_limits(keys),
        acme_server=server,
        dir=directory,
        accept_terms_of_service=tuple(tos),
        ca_bundle=ca_bundle,
        emails=tuple(emails),
        eab_kid=eab_kid,
        eab_hmac_key=eab_key,
        profile=keys.value("profile", profile_name, None),
    )


def _rate_limits(keys: Keys) -> RateLimits | None:
    # `rate-limits = letsencrypt` (the published numbers) or `none`; own `limit-*` numbers override it.
    preset = keys.value("rate-limits", rate_limits_preset, None)
    own = {
        key: keys.value(key, functools.partial(parse_limit, key), None)
        for key in ("limit-new-orders", "limit-duplicate-certificates", "limit-registered-domain")
    }
    if preset is None and not any(own.values()):
        return None
    base = preset or RateLimits()
    return RateLimits(
        own["limit-new-orders"] or base.new_orders,
        own["limit-duplicate-certificates"] or base.duplicate_certificates,
        own["limit-registered-domain"] or base.registered_domain,
    )


def rate_limits_preset(value: str) -> RateLimits | None:
    if value.lower() == "letsencrypt":
        return LETSENCRYPT
    if value.lower() == "none":
        return None
    raise ValueError(f"{value!r} is not a preset; use letsencrypt or none (and limit-* keys for own numbers)")


_DEFAULT_MGMT_LISTENERS = (Listener("127.0.0.1", 1313), Listener("::1", 1313))
DEFAULT_HTTP01_LISTENERS = (Listener("0.0.0.0", 1380), Listener("::", 1380))  # noqa: S104


def read_mgmt(keys: Keys) -> MgmtSettings:
    listeners = keys.values("listener", parse_listener)
    default_verification = keys.one("default-verification")
    default_storage = keys.one("default-storage")
    return MgmtSettings(
        listeners=tuple(listeners) or _DEFAULT_MGMT_LISTENERS,
        max_size=keys.value("max-size", parse_size, 4096),
        request_timeout=keys.value("request-timeout", positive_number, 60.0),
        renewal_interval=keys.value("renewal-interval", non_negative_number, 300.0),
        renewal_info_per_minute=keys.value("renewal-info-per-minute", positive_int, 300),
        renew_requested_within_days=keys.value("renew-requested-within", positive_number, None),
        body_timeout=keys.value("body-timeout", positive_number, 30.0),
        idle_timeout=keys.value("idle-timeout", positive_number, 15.0),
        workers=keys.value("workers", worker_count, 1),
        # None: not given; "": given empty (the default is disabled)
        default_verification=None if default_verification is None else default_verification.value,
        default_storage=None if default_storage is None else default_storage.value,
        admin_ip=tuple(keys.values("admin-ip", ip_network)) or LOOPBACK,
    )


def first_key_type(section: Section, valid: Sequence[str]) -> str:
    if not section.entries or section.entries[0].key != "type":
        first = section.entries[0] if section.entries else None
        raise section.error(f"the first key must be 'type' (one of {', '.join(valid)})", entry=first)
    entry = section.entries[0]
    if entry.value not in valid:
        raise section.error(f"unknown type {entry.value!r}; valid: {', '.join(valid)}", key="type", entry=entry)
    return entry.value


def read_storage(section: Section, keys: Keys) -> StorageSettings:
    assert section.name is not None
    stype = first_key_type(section, ("none", "file", "database"))
    keys.one("type")
    if stype == "none":
        return NoneStorage(section.name)
    if stype == "database":
        return DatabaseStorage(
            section.name,
            keys.value("renew-within", positive_number, 14.0),
            keys.value("held-chains", positive_int, 100_000),
        )
    directory_entry = keys.one("directory")
    if directory_entry is None:
        raise section.error("type = file needs 'directory', the folder the certificates are cached in")
    directory = keys.convert(directory_entry, lambda v: Path(nonempty(v)))
    return FileStorage(section.name, directory, keys.value("renew-within", positive_number, 14.0))


@dataclass(frozen=True, slots=True)
class RawAuth:
    """An ``[auth]`` block as read, before its references to other blocks are resolved: the
    verification, storage and profile entries can only be checked once every block is known."""

    section: Section
    settings: AuthSettings  # verification, storage and profile still at their defaults
    verification: Entry | None
    storage: Entry | None
    profile: Entry | None
    ca: Entry | None = None


def read_auth(section: Section, keys: Keys) -> RawAuth:
    assert section.name is not None
    hmac_type = keys.value("hmac_type", hash_name, None)
    hmac_key = keys.value("hmac_key", nonempty, None)
    keys.together("hmac_type", "hmac_key", (hmac_type, hmac_key))
    settings = AuthSettings(
        name=section.name,
        ips=tuple(keys.values("ip", ip_network)),
        hmac_type=hmac_type,
        hmac_key=hmac_key.encode() if hmac_key is not None else None,
        all=keys.value("all", parse_bool, False),
        domains=tuple(keys.values("domain", domain_glob)),
        addresses=tuple(keys.values("address", ip_network)),
        limit_new_orders=keys.value("limit-new-orders", _block_limit, None),
        limit_pending=keys.value("limit-pending", positive_int, None),
        acme_challenge=keys.value("acme-challenge", _acme_challenge, None),
    )
    return RawAuth(
        section, settings, keys.one("verification"), keys.one("storage"), keys.one("profile"), keys.one("ca")
    )


def _acme_challenge(value: str) -> str | None:
    # "http-01": acmems' ACME server validates it itself; "none": the block's policy is the proof
    lowered = value.strip().lower()
    if lowered not in ("http-01", "none"):
        raise ValueError(f"{value!r} is neither http-01 nor none")
    return None if lowered == "none" else lowered


_LONGEST_WINDOW = 31 * 86400  # a cluster keeps the block's order times this long


def _block_limit(value: str) -> Limit:
    limit = parse_limit("limit-new-orders", value)
    if limit.window.total_seconds() > _LONGEST_WINDOW:
        raise ValueError(f"{value!r}: the window may be at most 31d")
    return limit


def block_profile(section: Section, entry: Entry | None, default: str | None) -> str | None:
    """An auth block's profile: its own (empty: the CA's default), else the account's."""
    if entry is None:
        return default
    if entry.value == "":
        return None
    try:
        return profile_name(entry.value)
    except ValueError as exc:
        raise section.error(str(exc), key="profile", entry=entry) from None


def read_logging(keys: Keys) -> LoggingSettings:
    return LoggingSettings(
        level=keys.value("level", log_level, "info"),
        destination=keys.value("destination", nonempty, "stderr"),
        format=keys.value("format", nonempty, "text"),
    )
