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
from typing import ClassVar, TypeVar

from acmems.config.acme_server import read_acme_server, resolve_acme_server
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
    AcmeServerSettings,
    AuthSettings,
    ClusterSettings,
    DatabaseStorage,
    Http01Verification,
    LoggingSettings,
    MgmtSettings,
    NoneStorage,
    NotifySettings,
    ReceiverSettings,
    Settings,
    StorageSettings,
    VerificationSettings,
)
from acmems.core.thresholds import Thresholds
from acmems.errors import ConfigError

__all__ = ["load_settings", "settings_from_sources"]

S = TypeVar("S")

# ------------------------------------------------------------------------------------ the whole


_NAMED = {"verification", "storage", "auth"}  # [notify] is both: thresholds, and "name" receivers
_SINGLE = {"mgmt", "logging", "cluster", "acme-server"}


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


def _unnamed(kind: str) -> Keys:
    return Keys(Section(kind, None, "", 0))


@dataclasses.dataclass(slots=True)
class _Sections:
    """What the sections say, read one by one, before references between blocks are resolved."""

    warnings: list[str]
    account: AccountSettings = dataclasses.field(default_factory=AccountSettings)
    mgmt: MgmtSettings = dataclasses.field(default_factory=lambda: read_mgmt(_unnamed("mgmt")))
    mgmt_keys: Keys | None = None
    logging: LoggingSettings = dataclasses.field(default_factory=LoggingSettings)
    verifications: dict[str, VerificationSettings] = dataclasses.field(default_factory=dict)
    storages: dict[str, StorageSettings] = dataclasses.field(default_factory=dict)
    database_sections: list[Section] = dataclasses.field(default_factory=list)
    raw_auth: list[RawAuth] = dataclasses.field(default_factory=list)
    cluster: ClusterSettings | None = None
    accounts: dict[str, AccountSettings] = dataclasses.field(default_factory=dict)
    receivers: list[ReceiverSettings] = dataclasses.field(default_factory=list)
    acme_server: tuple[AcmeServerSettings, Section, Keys] | None = None
    notify_defaults: tuple[Thresholds, float, int, float] = dataclasses.field(
        default_factory=lambda: read_notify_defaults(_unnamed("notify"))
    )

    def read(self, section: Section) -> None:
        """Take one section in (a warning for an unknown one, and for its unknown keys)."""
        keys = Keys(section)
        if section.type in _SINGLE and section.name is not None:
            raise section.error(f"[{section.type}] takes no name")
        if section.type in _NAMED and section.name is None:
            raise section.error(f'[{section.type}] needs a name: [{section.type} "name"]')
        reader = self._READERS.get((section.type, section.name is not None))
        if reader is None:
            self.warnings.append(
                f"{section.file}:{section.line}: unknown section [{section.title}] is ignored "
                "(known: account, mgmt, verification, storage, auth, logging, cluster, notify, acme-server)"
            )
            return
        reader(self, section, keys)
        keys.warn_unknown(self.warnings)

    def _account(self, section: Section, keys: Keys) -> None:
        self.account = read_account(keys)

    def _named_account(self, section: Section, keys: Keys) -> None:
        assert section.name is not None
        if section.name == DEFAULT_ACCOUNT:
            raise section.error(f'[account "{DEFAULT_ACCOUNT}"] is the unnamed [account]; write [account]')
        self.accounts[section.name] = read_account(keys)

    def _mgmt(self, section: Section, keys: Keys) -> None:
        self.mgmt, self.mgmt_keys = read_mgmt(keys), keys

    def _logging(self, section: Section, keys: Keys) -> None:
        self.logging = read_logging(keys)

    def _verification(self, section: Section, keys: Keys) -> None:
        assert section.name is not None
        self.verifications[section.name] = read_verification(section, keys)

    def _storage(self, section: Section, keys: Keys) -> None:
        assert section.name is not None
        self.storages[section.name] = read_storage(section, keys)
        if isinstance(self.storages[section.name], DatabaseStorage):
            self.database_sections.append(section)

    def _cluster(self, section: Section, keys: Keys) -> None:
        self.cluster = read_cluster(keys)

    def _acme_server(self, section: Section, keys: Keys) -> None:
        self.acme_server = (read_acme_server(section, keys), section, keys)

    def _auth(self, section: Section, keys: Keys) -> None:
        self.raw_auth.append(read_auth(section, keys))

    def _notify(self, section: Section, keys: Keys) -> None:
        self.notify_defaults = read_notify_defaults(keys)

    def _receiver(self, section: Section, keys: Keys) -> None:
        self.receivers.append(read_receiver(section, keys))

    # (section type, whether it has a name) -> reader
    _READERS: ClassVar[dict[tuple[str, bool], Callable[[_Sections, Section, Keys], None]]] = {
        ("account", False): _account,
        ("account", True): _named_account,
        ("mgmt", False): _mgmt,
        ("logging", False): _logging,
        ("verification", True): _verification,
        ("storage", True): _storage,
        ("cluster", False): _cluster,
        ("auth", True): _auth,
        ("acme-server", False): _acme_server,
        ("notify", False): _notify,
        ("notify", True): _receiver,
    }

    def check_cluster(self) -> None:
        """``type = database`` needs ``[cluster]``; ``[cluster]`` without it shares no certificates."""
        if self.database_sections and self.cluster is None:
            first = self.database_sections[0]
            raise first.error(
                "type = database keeps certificates in the cluster database: add a [cluster] section with "
                "'database = postgresql://...'",
                key="type",
                entry=first.entries[0],
            )
        if self.cluster is not None and not self.database_sections:
            self.warnings.append(
                "[cluster] is set but no [storage] has type = database: certificates are kept per instance "
                "(HTTP-01 tokens and orders are still shared)"
            )


def settings_from_sources(sources: list[tuple[str, str]]) -> Settings:
    """Like :func:`load_settings` for ``(name, text)`` pairs (used by tests)."""
    warnings: list[str] = []
    read = _Sections(warnings)
    for section in parse_ini(sources, warnings):
        read.read(section)
    read.check_cluster()
    default_verification = _choose_default(
        "verification",
        read.mgmt.default_verification,
        read.verifications,
        read.mgmt_keys,
        lambda: Http01Verification(IMPLICIT_VERIFICATION, DEFAULT_HTTP01_LISTENERS, implicit=True),
    )
    default_storage = _choose_default(
        "storage",
        read.mgmt.default_storage,
        read.storages,
        read.mgmt_keys,
        lambda: NoneStorage(IMPLICIT_STORAGE, implicit=True),
    )
    auth_blocks = tuple(_auth_block(read, raw, default_verification, default_storage) for raw in read.raw_auth)
    acme_server = None
    if read.acme_server is not None:
        own, section, keys = read.acme_server
        acme_server = resolve_acme_server(
            own,
            section,
            read.cluster,
            lambda: _reference(
                section, keys.one("verification"), "verification", read.verifications, default_verification
            ),
            lambda: _ca_list(section, keys.one("ca"), read.accounts),
        )
    return Settings(
        account=read.account,
        mgmt=read.mgmt,
        verifications=read.verifications,
        storages=read.storages,
        auth_blocks=auth_blocks,
        logging=read.logging,
        default_verification=default_verification,
        default_storage=default_storage,
        cluster=read.cluster,
        notify=NotifySettings(tuple(read.receivers), *read.notify_defaults),
        accounts=read.accounts,
        acme_server=acme_server,
        files=tuple(name for name, _ in sources),
        warnings=tuple(warnings),
    )


def _auth_block(
    read: _Sections, raw: RawAuth, default_verification: str | None, default_storage: str | None
) -> AuthSettings:
    """An auth block with its references resolved and checked (warnings for one that never matches,
    or accepts every client without saying so)."""
    section, verifications = raw.section, read.verifications
    block = dataclasses.replace(
        raw.settings,
        verification=_reference(section, raw.verification, "verification", verifications, default_verification),
        storage=_reference(section, raw.storage, "storage", read.storages, default_storage),
        profile=block_profile(section, raw.profile, read.account.profile),
        ca=_ca_list(section, raw.ca, read.accounts),
        own_profile=raw.profile is not None,
    )
    if block.addresses and not isinstance(verifications[block.verification], Http01Verification):
        raise section.error(
            f"allows IP addresses (address = ...), which CAs validate by HTTP-01 only, but uses the "
            f"{verifications[block.verification].type} verification {block.verification!r}; give it an "
            "http01 verification",
            key="address",
        )
    if not block.domains and not block.addresses:
        read.warnings.append(
            f"{section.file}:{section.line}: [{section.title}] has no 'domain' (or 'address') and never matches"
        )
    if not block.has_methods:
        read.warnings.append(
            f"{section.file}:{section.line}: [{section.title}] has no ip, hmac_key or all: "
            "it accepts every client (write 'all = yes' to say so)"
        )
    return block


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
