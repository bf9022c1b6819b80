"""Configuration: the seed's INI format read once at start into frozen, typed settings.

Every error names file, line, section and key and says what would be valid. Unknown sections and
keys produce warnings (``Settings.warnings``) instead of being silently swallowed.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from acmems.config_values import (
    TSIG_ALGORITHMS,
    base64_secret,
    hash_name,
    ip_network,
    normalize_hash_name,
    parse_bool,
    parse_listener,
    parse_size,
    positive_int,
    positive_number,
    read_tsig_key_file,
)
from acmems.errors import ConfigError
from acmems.inifile import Entry, Section, parse_ini
from acmems.settings import (
    IMPLICIT_STORAGE,
    IMPLICIT_VERIFICATION,
    LETSENCRYPT_STAGING,
    AccountSettings,
    AuthSettings,
    DnsUpdateVerification,
    FileStorage,
    Http01Verification,
    Listener,
    LoggingSettings,
    MgmtSettings,
    NoneStorage,
    Settings,
    StorageSettings,
    VerificationSettings,
)

__all__ = [
    "LETSENCRYPT_STAGING",
    "AccountSettings",
    "AuthSettings",
    "DnsUpdateVerification",
    "FileStorage",
    "Http01Verification",
    "Listener",
    "LoggingSettings",
    "MgmtSettings",
    "NoneStorage",
    "Settings",
    "StorageSettings",
    "VerificationSettings",
    "load_settings",
    "normalize_hash_name",
    "parse_listener",
    "parse_size",
]

T = TypeVar("T")
S = TypeVar("S")

# ------------------------------------------------------------------------------- section readers


class _Keys:
    """Access to one section's entries that records which keys were used, for warnings."""

    def __init__(self, section: Section) -> None:
        self.section = section
        self.known: set[str] = set()

    def _error(self, entry: Entry, message: str) -> ConfigError:
        return ConfigError(message, file=entry.file, line=entry.line, section=self.section.title, key=entry.key)

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

    def warn_unknown(self, warnings: list[str]) -> None:
        for entry in self.section.entries:
            if entry.key not in self.known:
                warnings.append(
                    f"{entry.file}:{entry.line}: [{self.section.title}] unknown key {entry.key!r} "
                    f"is ignored (known: {', '.join(sorted(self.known))})"
                )
                self.known.add(entry.key)


def _nonempty(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


def _read_account(keys: _Keys) -> AccountSettings:
    server = keys.value("acme-server", _nonempty, LETSENCRYPT_STAGING)
    if not re.match(r"https?://", server):
        entry = keys.one("acme-server")
        assert entry is not None
        raise keys._error(entry, f"{server!r} is not an http(s) URL of an ACME directory")
    directory = keys.value("dir", lambda v: Path(_nonempty(v)), None)
    tos = []
    for entry in keys.all("accept-terms-of-service"):
        value = entry.value
        if value.lower() not in ("yes", "no", "true", "false") and not re.match(r"https?://", value):
            raise keys._error(entry, f"{value!r} is neither yes, no nor the URL of the terms")
        tos.append("yes" if value.lower() in ("yes", "true") else value)
    ca_bundle = keys.value("ca-bundle", lambda v: Path(_nonempty(v)), None)
    if ca_bundle is None and os.environ.get("ACME_CAFILE"):
        ca_bundle = Path(os.environ["ACME_CAFILE"])
    emails = keys.values("email", _email)
    eab_kid = keys.value("eab-kid", _nonempty, None)
    eab_key = keys.value("eab-hmac-key", _eab_key, None)
    if (eab_kid is None) != (eab_key is None):
        entry = keys.one("eab-kid") or keys.one("eab-hmac-key")
        assert entry is not None
        raise keys._error(entry, "eab-kid and eab-hmac-key must be given together")
    return AccountSettings(
        acme_server=server,
        dir=directory,
        accept_terms_of_service=tuple(tos),
        ca_bundle=ca_bundle,
        emails=tuple(emails),
        eab_kid=eab_kid,
        eab_hmac_key=eab_key,
        profile=keys.value("profile", _profile_name, None),
    )


def _email(value: str) -> str:
    value = value.removeprefix("mailto:")
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


def _eab_key(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_\-+/]+=*", value):
        raise ValueError("is not base64url, as the CA gives the EAB HMAC key")
    padded = value + "=" * (-len(value) % 4)
    try:
        decoded = base64.urlsafe_b64decode(padded.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ValueError("is not base64url, as the CA gives the EAB HMAC key") from None
    if not decoded:
        raise ValueError("is empty")
    return value


_DEFAULT_MGMT_LISTENERS = (Listener("127.0.0.1", 1313), Listener("::1", 1313))
_DEFAULT_HTTP01_LISTENERS = (Listener("0.0.0.0", 1380), Listener("::", 1380))  # noqa: S104


def _read_mgmt(keys: _Keys) -> MgmtSettings:
    listeners = keys.values("listener", parse_listener)
    default_verification = keys.one("default-verification")
    default_storage = keys.one("default-storage")
    return MgmtSettings(
        listeners=tuple(listeners) or _DEFAULT_MGMT_LISTENERS,
        max_size=keys.value("max-size", parse_size, 4096),
        request_timeout=keys.value("request-timeout", positive_number, 60.0),
        renewal_interval=keys.value("renewal-interval", _non_negative_number, 300.0),
        renew_requested_within_days=keys.value("renew-requested-within", positive_number, None),
        body_timeout=keys.value("body-timeout", positive_number, 30.0),
        idle_timeout=keys.value("idle-timeout", positive_number, 15.0),
        workers=keys.value("workers", _worker_count, 1),
        # None: not given; "": given empty (the default is disabled)
        default_verification=None if default_verification is None else default_verification.value,
        default_storage=None if default_storage is None else default_storage.value,
    )


def _first_key_type(section: Section, valid: Sequence[str]) -> str:
    if not section.entries or section.entries[0].key != "type":
        raise ConfigError(
            f"the first key must be 'type' (one of {', '.join(valid)})",
            file=section.file,
            line=section.entries[0].line if section.entries else section.line,
            section=section.title,
        )
    entry = section.entries[0]
    if entry.value not in valid:
        raise ConfigError(
            f"unknown type {entry.value!r}; valid: {', '.join(valid)}",
            file=entry.file,
            line=entry.line,
            section=section.title,
            key="type",
        )
    return entry.value


def _read_verification(section: Section, keys: _Keys) -> VerificationSettings:
    assert section.name is not None
    vtype = _first_key_type(section, ("http01", "dns01-dnsUpdate"))
    keys.one("type")
    if vtype == "http01":
        listeners = keys.values("listener", parse_listener)
        return Http01Verification(section.name, tuple(listeners) or _DEFAULT_HTTP01_LISTENERS)
    server_entry = keys.one("dns-server")
    host, port = "127.0.0.1", 53
    if server_entry is not None:
        host, port = keys.convert(server_entry, _dns_server)
    key_file = keys.value("tsig-key-file", Path, None)
    name = keys.value("tsig-key-name", _nonempty, None)
    secret = keys.value("tsig-key-secret", base64_secret, None)
    algorithm = keys.value("tsig-algorithm", _tsig_algorithm, "hmac-sha256")
    if key_file is not None:
        entry = keys.one("tsig-key-file")
        assert entry is not None
        if name is not None or secret is not None:
            raise keys._error(entry, "give either tsig-key-file or tsig-key-name + tsig-key-secret")
        name, file_algorithm, secret = keys.convert(entry, lambda v: read_tsig_key_file(Path(v)))
        algorithm = keys.convert(entry, lambda v: _tsig_algorithm(file_algorithm))
    elif (name is None) != (secret is None):
        entry = keys.one("tsig-key-name") or keys.one("tsig-key-secret")
        assert entry is not None
        raise keys._error(entry, "tsig-key-name and tsig-key-secret must be given together")
    zone = keys.value("zone", _zone_name, None)
    return DnsUpdateVerification(
        name=section.name,
        dns_server=host,
        dns_port=port,
        ttl=keys.value("ttl", positive_int, 60),
        timeout=keys.value("timeout", positive_number, 5.0),
        tsig_key_name=name,
        tsig_key_secret=secret,
        tsig_algorithm=algorithm,
        zone=zone,
        propagation_timeout=keys.value("propagation-timeout", positive_number, 60.0),
        check_servers=tuple(keys.values("check-server", _dns_server)),
    )


def _dns_server(value: str) -> tuple[str, int]:
    value = value.strip()
    if re.fullmatch(r"[0-9A-Fa-f:]+", value) and value.count(":") > 1:
        ipaddress.IPv6Address(value)
        return value, 53
    if ":" in value:
        listener = parse_listener(value)
        return listener.host, listener.port
    if not value:
        raise ValueError("must name the DNS server that takes updates (host or host:port)")
    return value, 53


def _tsig_algorithm(value: str) -> str:
    value = value.lower()
    if value not in TSIG_ALGORITHMS:
        raise ValueError(f"{value!r} is not a TSIG algorithm; use one of {', '.join(TSIG_ALGORITHMS)}")
    return value


def _zone_name(value: str) -> str:
    value = value.strip().rstrip(".").lower()
    if not re.fullmatch(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*", value):
        raise ValueError(f"{value!r} is not a DNS zone name")
    return value


def _read_storage(section: Section, keys: _Keys) -> StorageSettings:
    assert section.name is not None
    stype = _first_key_type(section, ("none", "file"))
    keys.one("type")
    if stype == "none":
        return NoneStorage(section.name)
    directory_entry = keys.one("directory")
    if directory_entry is None:
        raise ConfigError(
            "type = file needs 'directory', the folder the certificates are cached in",
            file=section.file,
            line=section.line,
            section=section.title,
        )
    directory = keys.convert(directory_entry, lambda v: Path(_nonempty(v)))
    return FileStorage(section.name, directory, keys.value("renew-within", positive_number, 14.0))


def _read_auth(section: Section, keys: _Keys) -> dict[str, object]:
    assert section.name is not None
    hmac_type = keys.value("hmac_type", hash_name, None)
    hmac_key = keys.value("hmac_key", _nonempty, None)
    if (hmac_type is None) != (hmac_key is None):
        entry = keys.one("hmac_type") or keys.one("hmac_key")
        assert entry is not None
        raise keys._error(entry, "hmac_type and hmac_key must be given together")
    return {
        "name": section.name,
        "ips": tuple(keys.values("ip", ip_network)),
        "hmac_type": hmac_type,
        "hmac_key": hmac_key.encode() if hmac_key is not None else None,
        "all": keys.value("all", parse_bool, False),
        "domains": tuple(keys.values("domain", _domain_glob)),
        "verification": keys.one("verification"),
        "storage": keys.one("storage"),
        "profile": keys.one("profile"),
    }


def _profile_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
        raise ValueError(f"{value!r} is not a profile name (as the CA's directory lists them)")
    return value


def _block_profile(section: Section, entry: object, default: str | None) -> str | None:
    """An auth block's profile: its own (empty: the CA's default), else the account's."""
    if entry is None:
        return default
    assert isinstance(entry, Entry)
    if entry.value == "":
        return None
    try:
        return _profile_name(entry.value)
    except ValueError as exc:
        raise ConfigError(str(exc), file=entry.file, line=entry.line, section=section.title, key="profile") from None


_MAX_WORKERS = 64


def _worker_count(value: str) -> int:
    count = positive_int(value)
    if count > _MAX_WORKERS:
        raise ValueError(f"{value!r} is too many; use 1 to {_MAX_WORKERS} (about one per CPU core)")
    return count


def _non_negative_number(value: str) -> float:
    if value.strip() in ("0", "0.0"):
        return 0.0
    return positive_number(value)


def _domain_glob(value: str) -> str:
    value = value.strip().lower().rstrip(".")
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not a domain glob; write e.g. mail.example.org or *.example.org")
    return value


_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _read_logging(keys: _Keys) -> LoggingSettings:
    def level(value: str) -> str:
        if value.lower() not in _LOG_LEVELS:
            raise ValueError(f"{value!r} is not a level; use one of {', '.join(_LOG_LEVELS)}")
        return value.lower()

    return LoggingSettings(
        level=keys.value("level", level, "info"),
        destination=keys.value("destination", _nonempty, "stderr"),
        format=keys.value("format", _nonempty, "text"),
    )


# ------------------------------------------------------------------------------------ the whole


_NAMED = {"verification", "storage", "auth"}
_SINGLE = {"account", "mgmt", "logging"}


def load_settings(paths: Sequence[str | Path]) -> Settings:
    """Read and validate configuration files (merged in order).

    Raises:
        ConfigError: the first problem found, naming file, line, section and key.
    """
    sources = []
    for path in paths:
        try:
            sources.append((str(path), Path(path).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
            raise ConfigError(f"cannot read the configuration: {reason}", file=str(path)) from None
    return settings_from_sources(sources)


def settings_from_sources(sources: list[tuple[str, str]]) -> Settings:
    """Like :func:`load_settings` for ``(name, text)`` pairs (used by tests)."""
    warnings: list[str] = []
    sections = parse_ini(sources, warnings)
    account = AccountSettings()
    mgmt = _read_mgmt(_Keys(Section("mgmt", None, "", 0)))
    logging_settings = LoggingSettings()
    verifications: dict[str, VerificationSettings] = {}
    storages: dict[str, StorageSettings] = {}
    raw_auth: list[tuple[Section, dict[str, object]]] = []
    mgmt_keys: _Keys | None = None
    for section in sections:
        keys = _Keys(section)
        if section.type in _SINGLE and section.name is not None:
            raise ConfigError(
                f"[{section.type}] takes no name",
                file=section.file,
                line=section.line,
                section=section.title,
            )
        if section.type in _NAMED and section.name is None:
            raise ConfigError(
                f'[{section.type}] needs a name: [{section.type} "name"]',
                file=section.file,
                line=section.line,
                section=section.title,
            )
        if section.type == "account":
            account = _read_account(keys)
        elif section.type == "mgmt":
            mgmt = _read_mgmt(keys)
            mgmt_keys = keys
        elif section.type == "logging":
            logging_settings = _read_logging(keys)
        elif section.type == "verification":
            assert section.name is not None
            verifications[section.name] = _read_verification(section, keys)
        elif section.type == "storage":
            assert section.name is not None
            storages[section.name] = _read_storage(section, keys)
        elif section.type == "auth":
            raw_auth.append((section, _read_auth(section, keys)))
        else:
            warnings.append(
                f"{section.file}:{section.line}: unknown section [{section.title}] is ignored "
                "(known: account, mgmt, verification, storage, auth, logging)"
            )
            continue
        keys.warn_unknown(warnings)

    default_verification = _choose_default(
        "verification",
        mgmt.default_verification,
        verifications,
        mgmt_keys,
        lambda: Http01Verification(IMPLICIT_VERIFICATION, _DEFAULT_HTTP01_LISTENERS, implicit=True),
    )
    default_storage = _choose_default(
        "storage",
        mgmt.default_storage,
        storages,
        mgmt_keys,
        lambda: NoneStorage(IMPLICIT_STORAGE, implicit=True),
    )
    auth_blocks = []
    for section, raw in raw_auth:
        auth_blocks.append(
            AuthSettings(
                name=str(raw["name"]),
                ips=raw["ips"],  # type: ignore[arg-type]
                hmac_type=raw["hmac_type"],  # type: ignore[arg-type]
                hmac_key=raw["hmac_key"],  # type: ignore[arg-type]
                all=bool(raw["all"]),
                domains=raw["domains"],  # type: ignore[arg-type]
                verification=_reference(
                    section, raw["verification"], "verification", verifications, default_verification
                ),
                storage=_reference(section, raw["storage"], "storage", storages, default_storage),
                profile=_block_profile(section, raw["profile"], account.profile),
            )
        )
        block = auth_blocks[-1]
        if not block.domains:
            warnings.append(f"{section.file}:{section.line}: [{section.title}] has no 'domain' and never matches")
        if not block.has_methods:
            warnings.append(
                f"{section.file}:{section.line}: [{section.title}] has no ip, hmac_key or all: "
                "it accepts every client (write 'all = yes' to say so)"
            )
    return Settings(
        account=account,
        mgmt=mgmt,
        verifications=verifications,
        storages=storages,
        auth_blocks=tuple(auth_blocks),
        logging=logging_settings,
        default_verification=default_verification,
        default_storage=default_storage,
        files=tuple(name for name, _ in sources),
        warnings=tuple(warnings),
    )


def _choose_default(
    kind: str,
    configured: str | None,
    blocks: dict[str, S],
    mgmt_keys: _Keys | None,
    implicit: Callable[[], S],
) -> str | None:
    key = f"default-{kind}"
    if configured is not None:
        if configured == "":
            return None
        if configured not in blocks:
            entry = mgmt_keys.one(key) if mgmt_keys else None
            names = ", ".join(sorted(blocks)) or "none defined"
            raise ConfigError(
                f'names no [{kind} "{configured}"] block (defined: {names})',
                file=entry.file if entry else None,
                line=entry.line if entry else None,
                section="mgmt",
                key=key,
            )
        return configured
    if len(blocks) == 1:
        return next(iter(blocks))
    name = IMPLICIT_VERIFICATION if kind == "verification" else IMPLICIT_STORAGE
    # Unlike the original, an implicit block never replaces the user's block of the same name.
    if name not in blocks:
        blocks[name] = implicit()
    return name


def _reference(
    section: Section,
    entry: object,
    kind: str,
    blocks: dict[str, object] | dict[str, VerificationSettings] | dict[str, StorageSettings],
    default: str | None,
) -> str:
    if entry is None:
        if default is None:
            raise ConfigError(
                f"names no {kind} and [mgmt] default-{kind} is disabled; add '{kind} = <name>'",
                file=section.file,
                line=section.line,
                section=section.title,
                key=kind,
            )
        return default
    assert isinstance(entry, Entry)
    if entry.value not in blocks:
        names = ", ".join(sorted(blocks)) or "none defined"
        raise ConfigError(
            f'names no [{kind} "{entry.value}"] block (defined: {names})',
            file=entry.file,
            line=entry.line,
            section=section.title,
            key=kind,
        )
    return entry.value
