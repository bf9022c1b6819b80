"""Configuration: the seed's INI format read once at start into frozen, typed settings.

Every error names file, line, section and key and says what would be valid. Unknown sections and
keys produce warnings (``Settings.warnings``) instead of being silently swallowed. The single
sections are read by :mod:`acmems.config.sections`; this module puts them together and resolves
what refers to other blocks (defaults, an auth block's verification and storage).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from acmems.config.ini import Entry, Section, parse_ini
from acmems.config.notify import read_notify_defaults, read_receiver
from acmems.config.sections import (
    DEFAULT_HTTP01_LISTENERS,
    Keys,
    RawAuth,
    block_profile,
    read_account,
    read_auth,
    read_cluster,
    read_logging,
    read_mgmt,
    read_storage,
)
from acmems.config.verification import read_verification
from acmems.core.settings import (
    DEFAULT_ACCOUNT,
    IMPLICIT_STORAGE,
    IMPLICIT_VERIFICATION,
    AccountSettings,
    ClusterSettings,
    DatabaseStorage,
    Http01Verification,
    LoggingSettings,
    NoneStorage,
    NotifySettings,
    ReceiverSettings,
    Settings,
    StorageSettings,
    VerificationSettings,
)
from acmems.errors import ConfigError

__all__ = ["load_settings", "settings_from_sources"]

S = TypeVar("S")

# ------------------------------------------------------------------------------------ the whole


_NAMED = {"verification", "storage", "auth"}  # [notify] is both: thresholds, and "name" receivers
_SINGLE = {"mgmt", "logging", "cluster"}


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
    mgmt = read_mgmt(Keys(Section("mgmt", None, "", 0)))
    logging_settings = LoggingSettings()
    verifications: dict[str, VerificationSettings] = {}
    storages: dict[str, StorageSettings] = {}
    raw_auth: list[RawAuth] = []
    mgmt_keys: Keys | None = None
    cluster: ClusterSettings | None = None
    database_sections: list[Section] = []
    accounts: dict[str, AccountSettings] = {}
    receivers: list[ReceiverSettings] = []
    thresholds, check_interval, metrics_certificates = read_notify_defaults(Keys(Section("notify", None, "", 0)))
    for section in sections:
        keys = Keys(section)
        if section.type in _SINGLE and section.name is not None:
            raise section.error(f"[{section.type}] takes no name")
        if section.type in _NAMED and section.name is None:
            raise section.error(f'[{section.type}] needs a name: [{section.type} "name"]')
        if section.type == "account" and section.name is None:
            account = read_account(keys)
        elif section.type == "account":
            assert section.name is not None
            if section.name == DEFAULT_ACCOUNT:
                raise section.error(f'[account "{DEFAULT_ACCOUNT}"] is the unnamed [account]; write [account]')
            accounts[section.name] = read_account(keys)
        elif section.type == "mgmt":
            mgmt = read_mgmt(keys)
            mgmt_keys = keys
        elif section.type == "logging":
            logging_settings = read_logging(keys)
        elif section.type == "verification":
            assert section.name is not None
            verifications[section.name] = read_verification(section, keys)
        elif section.type == "storage":
            assert section.name is not None
            storages[section.name] = read_storage(section, keys)
            if isinstance(storages[section.name], DatabaseStorage):
                database_sections.append(section)
        elif section.type == "cluster":
            cluster = read_cluster(keys)
        elif section.type == "auth":
            raw_auth.append(read_auth(section, keys))
        elif section.type == "notify" and section.name is None:
            thresholds, check_interval, metrics_certificates = read_notify_defaults(keys)
        elif section.type == "notify":
            assert section.name is not None
            receivers.append(read_receiver(section, keys))
        else:
            warnings.append(
                f"{section.file}:{section.line}: unknown section [{section.title}] is ignored "
                "(known: account, mgmt, verification, storage, auth, logging, cluster, notify)"
            )
            continue
        keys.warn_unknown(warnings)

    if database_sections and cluster is None:
        raise database_sections[0].error(
            "type = database keeps certificates in the cluster database: add a [cluster] section with "
            "'database = postgresql://...'",
            key="type",
            entry=database_sections[0].entries[0],
        )
    if cluster is not None and not database_sections:
        warnings.append(
            "[cluster] is set but no [storage] has type = database: certificates are kept per instance "
            "(HTTP-01 tokens and orders are still shared)"
        )
    default_verification = _choose_default(
        "verification",
        mgmt.default_verification,
        verifications,
        mgmt_keys,
        lambda: Http01Verification(IMPLICIT_VERIFICATION, DEFAULT_HTTP01_LISTENERS, implicit=True),
    )
    default_storage = _choose_default(
        "storage",
        mgmt.default_storage,
        storages,
        mgmt_keys,
        lambda: NoneStorage(IMPLICIT_STORAGE, implicit=True),
    )
    auth_blocks = []
    for raw in raw_auth:
        section = raw.section
        block = dataclasses.replace(
            raw.settings,
            verification=_reference(section, raw.verification, "verification", verifications, default_verification),
            storage=_reference(section, raw.storage, "storage", storages, default_storage),
            profile=block_profile(section, raw.profile, account.profile),
            ca=_ca_list(section, raw.ca, accounts),
        )
        auth_blocks.append(block)
        if block.addresses and not isinstance(verifications[block.verification], Http01Verification):
            raise section.error(
                f"allows IP addresses (address = ...), which CAs validate by HTTP-01 only, but uses the "
                f"{verifications[block.verification].type} verification {block.verification!r}; give it an "
                "http01 verification",
                key="address",
            )
        if not block.domains and not block.addresses:
            warnings.append(
                f"{section.file}:{section.line}: [{section.title}] has no 'domain' (or 'address') and never matches"
            )
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
        cluster=cluster,
        notify=NotifySettings(tuple(receivers), thresholds, check_interval, metrics_certificates),
        accounts=accounts,
        files=tuple(name for name, _ in sources),
        warnings=tuple(warnings),
    )


def _choose_default(
    kind: str,
    configured: str | None,
    blocks: dict[str, S],
    mgmt_keys: Keys | None,
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


def _ca_list(section: Section, entry: Entry | None, accounts: dict[str, AccountSettings]) -> tuple[str, ...]:
    if entry is None:
        return (DEFAULT_ACCOUNT,)
    names = tuple(n for n in entry.value.replace(",", " ").split() if n)
    if not names:
        raise section.error('is empty; name one or more accounts (default, or [account "NAME"])', key="ca", entry=entry)
    for name in names:
        if name != DEFAULT_ACCOUNT and name not in accounts:
            known = ", ".join([DEFAULT_ACCOUNT, *sorted(accounts)])
            raise section.error(f'names no [account "{name}"] (defined: {known})', key="ca", entry=entry)
    if len(set(names)) != len(names):
        raise section.error("names an account twice", key="ca", entry=entry)
    return names


def _reference(
    section: Section,
    entry: Entry | None,
    kind: str,
    blocks: dict[str, VerificationSettings] | dict[str, StorageSettings],
    default: str | None,
) -> str:
    if entry is None:
        if default is None:
            raise section.error(
                f"names no {kind} and [mgmt] default-{kind} is disabled; add '{kind} = <name>'", key=kind
            )
        return default
    if entry.value not in blocks:
        names = ", ".join(sorted(blocks)) or "none defined"
        raise section.error(f'names no [{kind} "{entry.value}"] block (defined: {names})', key=kind, entry=entry)
    return entry.value
