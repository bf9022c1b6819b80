"""The validated configuration: small frozen values, built by :mod:`acmems.config`."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from acmems.core.event_kinds import DEFAULT_EVENTS, EventKind
from acmems.core.rate_limits import Limit, RateLimits
from acmems.core.thresholds import Thresholds

__all__ = [
    "DEFAULT_ACCOUNT",
    "IMPLICIT_STORAGE",
    "IMPLICIT_VERIFICATION",
    "LETSENCRYPT_STAGING",
    "LOOPBACK",
    "AccountSettings",
    "AcmeServerSettings",
    "AuthSettings",
    "ClusterSettings",
    "CommandReceiver",
    "DatabaseStorage",
    "DnsPersistVerification",
    "DnsUpdateVerification",
    "EmailReceiver",
    "FileStorage",
    "Http01Verification",
    "LexiconVerification",
    "Listener",
    "LoggingSettings",
    "MgmtSettings",
    "NoneStorage",
    "NotifySettings",
    "ReceiverSettings",
    "Settings",
    "StorageSettings",
    "VerificationSettings",
    "WebhookReceiver",
]

LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
IMPLICIT_VERIFICATION = "http"
IMPLICIT_STORAGE = "none"
DEFAULT_ACCOUNT = "default"  # the unnamed [account]
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))  # [mgmt] admin-ip's default


@dataclass(frozen=True, slots=True)
class Listener:
    """A host and port to listen on; IPv6 hosts without brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """``[account]``: which CA, where the account key lives, what we agree to."""

    acme_server: str = LETSENCRYPT_STAGING
    dir: Path | None = None
    accept_terms_of_service: tuple[str, ...] = ()
    ca_bundle: Path | None = None
    emails: tuple[str, ...] = ()
    eab_kid: str | None = None
    eab_hmac_key: str | None = field(default=None, repr=False)  # a secret: never in a repr or a log
    profile: str | None = None
    rate_limits: RateLimits | None = None  # checked before each new order (None: the CA's word only)

    def accepts_terms(self, tos_url: str | None) -> bool:
        """Whether the configuration agrees to the CA's terms at ``tos_url``."""
        for value in self.accept_terms_of_service:
            if value.lower() == "yes" or (tos_url is not None and value == tos_url):
                return True
        return False


@dataclass(frozen=True, slots=True)
class MgmtSettings:
    """``[mgmt]``: the management (signing) listeners."""

    listeners: tuple[Listener, ...]
    max_size: int = 4096
    request_timeout: float = 60.0
    renewal_interval: float = 300.0
    renewal_info_per_minute: int = 300
    renew_requested_within_days: float | None = None
    body_timeout: float = 30.0
    idle_timeout: float = 15.0
    workers: int = 1
    default_verification: str | None = None
    default_storage: str | None = None
    # who may read /status, /metrics and /health (the socket's peer); default: loopback only
    admin_ip: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = LOOPBACK


@dataclass(frozen=True, slots=True)
class Http01Verification:
    """``type = http01``: answer HTTP-01 validations on these listeners."""

    name: str
    listeners: tuple[Listener, ...]
    implicit: bool = False
    type: str = "http01"


@dataclass(frozen=True, slots=True)
class DnsUpdateVerification:
    """``type = dns01-dnsUpdate``: publish DNS-01 TXT records by RFC 2136 updates."""

    name: str
    dns_server: str = "127.0.0.1"
    dns_port: int = 53
    ttl: int = 60
    timeout: float = 5.0
    tsig_key_name: str | None = None
    tsig_key_secret: str | None = field(default=None, repr=False)
    tsig_algorithm: str = "hmac-sha256"
    zone: str | None = None
    propagation_timeout: float = 60.0
    check_servers: tuple[tuple[str, int], ...] = ()
    more_dns_servers: tuple[tuple[str, int], ...] = ()  # further primaries (dns-server repeated), in order
    follow_cname: bool = True
    type: str = "dns01-dnsUpdate"

    @property
    def dns_servers(self) -> tuple[tuple[str, int], ...]:
        """Every primary, tried in this order."""
        return ((self.dns_server, self.dns_port), *self.more_dns_servers)


@dataclass(frozen=True, slots=True)
class DnsPersistVerification:
    """``type = dns01-persist``: answer dns-persist-01 with a TXT record published once; ``update``
    (when the block names a dns-server) is where acmems checks it, and ``persist-record --publish``
    adds it."""

    name: str
    update: DnsUpdateVerification | None = None
    type: str = "dns01-persist"


@dataclass(frozen=True, slots=True)
class LexiconVerification:
    """``type = dns01-lexicon``: DNS-01 TXT values written through a dns-lexicon provider's API;
    ``lookup`` holds where acmems queries (zone, CNAMEs, served yet) and the timings."""

    name: str
    provider: str
    options: dict[str, str] = field(repr=False)  # the provider's, secrets included (read from files)
    secrets: tuple[str, ...] = field(repr=False)  # the values read from -file options: never shown
    lookup: DnsUpdateVerification = field(default_factory=lambda: DnsUpdateVerification("lexicon"))
    type: str = "dns01-lexicon"


VerificationSettings = Http01Verification | DnsUpdateVerification | DnsPersistVerification | LexiconVerification


@dataclass(frozen=True, slots=True)
class NoneStorage:
    """``type = none``: never caches."""

    name: str
    implicit: bool = False
    type: str = "none"


@dataclass(frozen=True, slots=True)
class FileStorage:
    """``type = file``: the original's on-disk cache."""

    name: str
    directory: Path
    renew_within_days: float = 14.0
    type: str = "file"


@dataclass(frozen=True, slots=True)
class DatabaseStorage:
    """``type = database``: certificates kept in the cluster database, shared by every instance."""

    name: str
    renew_within_days: float = 14.0
    held_chains: int = 100_000  # chains each process keeps in memory, the least recently served dropped
    type: str = "database"


StorageSettings = NoneStorage | FileStorage | DatabaseStorage


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """``[cluster]``: the PostgreSQL database several acmems share, and this instance's name."""

    database: str = field(repr=False)  # may hold a password: never log it (see acmems.cluster.masked)
    password: str | None = field(default=None, repr=False)
    name: str = "acmems"


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """``[auth "name"]``: who may ask for which names, and how those are validated and cached."""

    name: str
    ips: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    hmac_type: str | None = None
    hmac_key: bytes | None = field(default=None, repr=False)
    all: bool = False
    domains: tuple[str, ...] = ()
    addresses: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # IP SANs it may certify
    verification: str = IMPLICIT_VERIFICATION
    storage: str = IMPLICIT_STORAGE
    profile: str | None = None
    ca: tuple[str, ...] = (DEFAULT_ACCOUNT,)  # the accounts to order from, in turn when one fails
    limit_new_orders: Limit | None = None  # new orders its clients may start in a window
    limit_pending: int | None = None  # its orders running at once
    acme_challenge: str | None = None  # ACME server: "http-01" (acmems validates it) instead of the policy alone
    own_profile: bool = False  # its profile is its own `profile =` (wins over an ACME order's), not the account's

    @property
    def has_methods(self) -> bool:
        """Whether the block names any way to authenticate the client."""
        return bool(self.ips) or self.hmac_key is not None or self.all


@dataclass(frozen=True, slots=True)
class AcmeServerSettings:
    """``[acme-server]``: acmems as an RFC 8555 server for the fleet's ACME clients. Its listener
    certificate is ``certificate`` + ``key``, or one acmems orders for ``names`` itself."""

    listeners: tuple[Listener, ...]
    dir: Path | None = None  # accounts, orders, certificates (not with [cluster]: the database)
    certificate: Path | None = None
    key: Path | None = None
    names: tuple[str, ...] = ()
    verification: str | None = None  # for `names`: the verification (resolved: never None)
    ca: tuple[str, ...] = (DEFAULT_ACCOUNT,)
    http01_port: int = 80  # where acmems fetches http-01 answers of `acme-challenge = http-01` blocks


@dataclass(frozen=True, slots=True)
class WebhookReceiver:
    """``[notify "name"] type = webhook``: one POST per event."""

    name: str
    url: str
    secret: bytes | None = field(default=None, repr=False)  # X-Acmems-Signature's HMAC key
    secret_file: str | None = None
    events: frozenset[EventKind] = DEFAULT_EVENTS
    type: str = "webhook"


@dataclass(frozen=True, slots=True)
class EmailReceiver:
    """``[notify "name"] type = email``: one mail per event by SMTP."""

    name: str
    host: str
    port: int
    sender: str
    to: tuple[str, ...]
    security: str = "starttls"  # starttls | tls | none (loopback only)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: str | None = None
    ca_file: str | None = None  # trust this CA for the SMTP server's certificate (else the system's)
    events: frozenset[EventKind] = DEFAULT_EVENTS
    type: str = "email"


@dataclass(frozen=True, slots=True)
class CommandReceiver:
    """``[notify "name"] type = command``: the event's JSON on the command's standard input."""

    name: str
    argv: tuple[str, ...]
    events: frozenset[EventKind] = DEFAULT_EVENTS
    type: str = "command"


ReceiverSettings = WebhookReceiver | EmailReceiver | CommandReceiver


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """``[notify]`` (thresholds, how often to look) and every ``[notify "name"]`` receiver."""

    receivers: tuple[ReceiverSettings, ...] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)
    check_interval: float = 60.0  # how often overdue, expiring and not-picked-up are looked for
    metrics_certificates: int = 10_000  # above this many certificates, /metrics has only totals
    repeat_failed: float = 3600.0  # at most one failed event per block and set of names this often (0: each)


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    """``[logging]``."""

    level: str = "info"
    destination: str = "stderr"
    format: str = "text"


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole, validated configuration."""

    account: AccountSettings
    mgmt: MgmtSettings
    verifications: dict[str, VerificationSettings]
    storages: dict[str, StorageSettings]
    auth_blocks: tuple[AuthSettings, ...]
    logging: LoggingSettings
    default_verification: str | None
    default_storage: str | None
    cluster: ClusterSettings | None = None
    notify: NotifySettings = NotifySettings()
    accounts: dict[str, AccountSettings] = field(default_factory=dict)  # named, and "default" (= account)
    acme_server: AcmeServerSettings | None = None
    files: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def account_named(self, name: str) -> AccountSettings:
        """``[account "name"]``, or the unnamed ``[account]`` for ``default``."""
        return self.account if name == DEFAULT_ACCOUNT else self.accounts[name]

    @property
    def used_accounts(self) -> tuple[str, ...]:
        """The default account, then every other account some auth block orders from."""
        seen = [DEFAULT_ACCOUNT]
        for ca in [b.ca for b in self.auth_blocks] + ([self.acme_server.ca] if self.acme_server else []):
            seen += [name for name in ca if name not in seen]
        return tuple(seen)

    @property
    def used_verifications(self) -> tuple[str, ...]:
        """Verification blocks some auth block can use: only these open listeners."""
        seen: list[str] = []
        for block in self.auth_blocks:
            if block.verification not in seen:
                seen.append(block.verification)
        own = self.acme_server.verification if self.acme_server is not None and self.acme_server.names else None
        if own is not None and own not in seen:
            seen.append(own)
        return tuple(seen)
