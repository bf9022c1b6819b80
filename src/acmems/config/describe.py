"""``acmems check``: the resolved configuration as text, secrets masked."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from acmems.config.masking import masked
from acmems.core.settings import (
    AccountSettings,
    AuthSettings,
    CommandReceiver,
    DatabaseStorage,
    DnsPersistVerification,
    DnsUpdateVerification,
    EmailReceiver,
    FileStorage,
    Http01Verification,
    LexiconVerification,
    ReceiverSettings,
    Settings,
    VerificationSettings,
    WebhookReceiver,
)

__all__ = ["describe_settings"]


def _mask(secret: str | bytes | None) -> str:
    return "-" if secret is None else "********"


def _account_lines(name: str, account: AccountSettings) -> list[str]:
    limits = account.rate_limits
    shown = (
        ", ".join(str(x) for x in (limits.new_orders, limits.duplicate_certificates, limits.registered_domain) if x)
        if limits is not None
        else "- (only the CA's answers)"
    )
    return [
        f'[account "{name}"]' if name else "[account]",
        f"  acme-server = {account.acme_server}",
        f"  dir = {account.dir or '- (missing: required to run)'}",
        f"  accept-terms-of-service = {', '.join(account.accept_terms_of_service) or 'no'}",
        f"  ca-bundle = {account.ca_bundle or 'system'}",
        f"  email = {', '.join(account.emails) or '-'}",
        f"  eab-kid = {account.eab_kid or '-'}, eab-hmac-key = {_mask(account.eab_hmac_key)}",
        f"  profile = {account.profile or '- (the CA default)'}",
        f"  rate limits = {shown}",
    ]


def _masked_url(url: str) -> str:
    """A webhook URL as ``acmems check`` shows it. A password in it, its query and every path segment
    after the first are secrets too: Slack and Teams keep their tokens in the path
    (``/services/T0/B0/XXXX`` is shown ``/services/********``)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = (f"{parts.username}:********@" if parts.password else "") + host + (f":{parts.port}" if parts.port else "")
    first, _, rest = parts.path.lstrip("/").partition("/")
    path = ("/" + first if first or parts.path else "") + ("/********" if rest else "")
    return urlunsplit((parts.scheme, netloc, path, "********" if parts.query else "", ""))


def _receiver_line(receiver: ReceiverSettings) -> str:
    head = f'[notify "{receiver.name}"] type = {receiver.type}'
    if isinstance(receiver, WebhookReceiver):
        what = f"url = {_masked_url(receiver.url)} secret-file = {receiver.secret_file or '-'}"
    elif isinstance(receiver, EmailReceiver):
        login = f"username = {receiver.username} password-file = {receiver.password_file}" if receiver.username else ""
        what = (
            f"smtp-server = {receiver.host}:{receiver.port} security = {receiver.security} from = {receiver.sender} "
            f"to = {', '.join(receiver.to)} {login}".rstrip()
        )
    else:
        assert isinstance(receiver, CommandReceiver)
        what = f"command = {' '.join(receiver.argv)}"
    return f"{head} {what} events = {', '.join(sorted(receiver.events))}"


def describe_settings(settings: Settings) -> str:
    """The resolved configuration as text, secrets masked (``acmems check``)."""
    out = [f"configuration: {', '.join(settings.files)}"]
    for name, account in [("", settings.account), *settings.accounts.items()]:
        out += _account_lines(name, account)
    out += _mgmt_lines(settings)
    if settings.cluster is not None:
        cluster = settings.cluster
        out += [
            "[cluster]",
            f"  database = {masked(cluster.database)}, password-file = {_mask(cluster.password)}",
            f"  name = {cluster.name}",
        ]
    for name, verification in settings.verifications.items():
        used = "" if name in settings.used_verifications else " (unused: no listener opened)"
        out += _verification_lines(name, verification, used)
    for name, storage in settings.storages.items():
        out.append(f'[storage "{name}"] type = {storage.type}')
        if isinstance(storage, FileStorage):
            out.append(f"  directory = {storage.directory}, renew-within = {storage.renew_within_days:g} days")
        elif isinstance(storage, DatabaseStorage):
            out.append(
                f"  in the cluster database, renew-within = {storage.renew_within_days:g} days, "
                f"held-chains = {storage.held_chains}"
            )
    for block in settings.auth_blocks:
        out += _auth_lines(block)
    acme = settings.acme_server
    if acme is not None:
        ordered = f"ordered by acmems: verification {acme.verification}, ca {' '.join(acme.ca)}"
        tls = (
            f"name = {', '.join(acme.names)} ({ordered})"
            if acme.names
            else f"certificate = {acme.certificate}, key = {acme.key}"
        )
        out += [
            "[acme-server]",
            f"  listener = {', '.join(str(listener) for listener in acme.listeners)}",
            f"  {tls}",
            f"  dir = {acme.dir or '- (the cluster database)'}, http-01-port = {acme.http01_port}",
        ]
    notify = settings.notify
    t = notify.thresholds
    out.append(
        f"[notify] overdue-grace = {t.overdue_grace}, expiring = {t.expiring_left}, "
        f"not-picked-up-grace = {t.pickup_grace}, remind-every = {t.remind_every}, "
        f"check-interval = {notify.check_interval:g} s, metrics-certificates = {notify.metrics_certificates}, "
        f"repeat-failed = {notify.repeat_failed:g} s"
    )
    out += [_receiver_line(receiver) for receiver in notify.receivers]
    log = settings.logging
    out.append(f"[logging] level = {log.level}, destination = {log.destination}, format = {log.format}")
    for warning in settings.warnings:
        out.append(f"warning: {warning}")
    return "\n".join(out)


def _mgmt_lines(settings: Settings) -> list[str]:
    mgmt = settings.mgmt
    renew_requested = (
        f"{mgmt.renew_requested_within_days:g} days" if mgmt.renew_requested_within_days else "twice the lifetime"
    )
    return [
        "[mgmt]",
        f"  listeners = {', '.join(str(x) for x in mgmt.listeners)}",
        f"  max-size = {mgmt.max_size} bytes",
        f"  request-timeout = {mgmt.request_timeout:g} s, body-timeout = {mgmt.body_timeout:g} s, "
        f"idle-timeout = {mgmt.idle_timeout:g} s",
        f"  workers = {mgmt.workers}" + (" (one process)" if mgmt.workers == 1 else " processes"),
        f"  renewal-interval = {mgmt.renewal_interval:g} s"
        + (" (proactive renewal off)" if not mgmt.renewal_interval else "")
        + f", renewal-info-per-minute = {mgmt.renewal_info_per_minute}"
        + f", renew-requested-within = {renew_requested}",
        f"  default verification = {settings.default_verification or '- (disabled)'}",
        f"  default storage = {settings.default_storage or '- (disabled)'}",
        f"  admin-ip (/status, /metrics, /health) = {', '.join(str(n) for n in mgmt.admin_ip)}",
    ]


def _verification_lines(name: str, verification: VerificationSettings, used: str) -> list[str]:
    implicit = " (implicit)" if isinstance(verification, Http01Verification) and verification.implicit else ""
    out = [f'[verification "{name}"] type = {verification.type}{implicit}{used}']
    if isinstance(verification, Http01Verification):
        out.append(f"  listeners = {', '.join(str(x) for x in verification.listeners)}")
    elif isinstance(verification, DnsPersistVerification):
        if verification.update is None:
            out.append("  no dns-server: the CA alone checks the _validation-persist records")
        else:
            out.append("  records checked (and published by persist-record --publish) at:")
            out += _dns_update_lines(verification.update)
    elif isinstance(verification, LexiconVerification):
        shown = ", ".join(f"{k} = {'***' if v in verification.secrets else v}" for k, v in verification.options.items())
        out.append(f"  provider = {verification.provider} (dns-lexicon), options: {shown or '-'}")
        out += [line for line in _dns_update_lines(verification.lookup) if not line.startswith("  tsig")]
    else:
        out += _dns_update_lines(verification)
    return out


def _auth_lines(block: AuthSettings) -> list[str]:
    methods = []
    if block.ips:
        methods.append("ip " + ", ".join(str(n) for n in block.ips))
    if block.hmac_key is not None:
        methods.append(f"hmac {block.hmac_type} key {_mask(block.hmac_key)}")
    if block.all:
        methods.append("all")
    return [
        f'[auth "{block.name}"]',
        f"  methods = {'; '.join(methods) or 'none (accepts every client)'}",
        f"  domains = {', '.join(block.domains) or ('-' if block.addresses else '- (never matches)')}",
        f"  addresses = {', '.join(str(n) for n in block.addresses) or '- (no IP-address certificates)'}",
        f"  verification = {block.verification}, storage = {block.storage}, "
        f"profile = {block.profile or '- (the CA default)'}, ca = {' '.join(block.ca)}",
        f"  limit-new-orders = {block.limit_new_orders or '-'}, limit-pending = {block.limit_pending or '-'}",
        f"  acme-challenge = {block.acme_challenge or 'none (the policy is the proof)'}",
    ]


def _dns_update_lines(verification: DnsUpdateVerification) -> list[str]:
    return [
        "  dns-server = "
        + ", ".join(f"{h}:{p}" for h, p in verification.dns_servers)
        + (" (tried in this order)" if verification.more_dns_servers else ""),
        "  follow-cname = " + ("yes (_acme-challenge CNAMEs are followed)" if verification.follow_cname else "no"),
        f"  ttl = {verification.ttl}, timeout = {verification.timeout:g} s, "
        f"propagation-timeout = {verification.propagation_timeout:g} s",
        f"  zone = {verification.zone or '(discovered)'}, check-server = "
        + (", ".join(f"{h}:{p}" for h, p in verification.check_servers) or "-"),
        (
            f"  tsig = {verification.tsig_key_name} {verification.tsig_algorithm}, secret "
            f"{_mask(verification.tsig_key_secret)}"
            + (" (weak: prefer hmac-sha256)" if verification.tsig_algorithm == "hmac-md5" else "")
            if verification.tsig_key_name
            else "  tsig = none (updates are unsigned: anyone who reaches the server could send them)"
        ),
    ]
