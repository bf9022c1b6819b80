"""Command lines: ``acmems [serve|check] CONFIG...`` and ``acme-register ... CONFIG...``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from acme import client as acme_client
from acme import messages
from josepy.jwk import JWK

from acmems import __version__
from acmems.account import AccountFiles, generate_key, jwk_and_alg
from acmems.acme_ca import AcmeCa, ca_error, create_account, new_registration
from acmems.config import (
    DnsUpdateVerification,
    FileStorage,
    Http01Verification,
    Settings,
    load_settings,
)
from acmems.errors import AcmemsError, ConfigError

__all__ = ["describe_settings", "main", "register_main"]

_COMMANDS = ("serve", "check", "list", "revoke")


def _mask(secret: str | bytes | None) -> str:
    return "-" if secret is None else "********"


def describe_settings(settings: Settings) -> str:
    """The resolved configuration as text, secrets masked (``acmems check``)."""
    out = [f"configuration: {', '.join(settings.files)}"]
    account = settings.account
    out += [
        "[account]",
        f"  acme-server = {account.acme_server}",
        f"  dir = {account.dir or '- (missing: required to run)'}",
        f"  accept-terms-of-service = {', '.join(account.accept_terms_of_service) or 'no'}",
        f"  ca-bundle = {account.ca_bundle or 'system'}",
        f"  email = {', '.join(account.emails) or '-'}",
        f"  eab-kid = {account.eab_kid or '-'}, eab-hmac-key = {_mask(account.eab_hmac_key)}",
        f"  profile = {account.profile or '- (the CA default)'}",
        "[mgmt]",
        f"  listeners = {', '.join(str(x) for x in settings.mgmt.listeners)}",
        f"  max-size = {settings.mgmt.max_size} bytes",
        f"  request-timeout = {settings.mgmt.request_timeout:g} s, body-timeout = {settings.mgmt.body_timeout:g} s, "
        f"idle-timeout = {settings.mgmt.idle_timeout:g} s",
        f"  workers = {settings.mgmt.workers}" + (" (one process)" if settings.mgmt.workers == 1 else " processes"),
        f"  renewal-interval = {settings.mgmt.renewal_interval:g} s"
        + (" (proactive renewal off)" if not settings.mgmt.renewal_interval else "")
        + ", renew-requested-within = "
        + (
            f"{settings.mgmt.renew_requested_within_days:g} days"
            if settings.mgmt.renew_requested_within_days
            else "twice the lifetime"
        ),
        f"  default verification = {settings.default_verification or '- (disabled)'}",
        f"  default storage = {settings.default_storage or '- (disabled)'}",
    ]
    for name, verification in settings.verifications.items():
        used = "" if name in settings.used_verifications else " (unused: no listener opened)"
        implicit = " (implicit)" if isinstance(verification, Http01Verification) and verification.implicit else ""
        out.append(f'[verification "{name}"] type = {verification.type}{implicit}{used}')
        if isinstance(verification, Http01Verification):
            out.append(f"  listeners = {', '.join(str(x) for x in verification.listeners)}")
        elif isinstance(verification, DnsUpdateVerification):
            out += [
                f"  dns-server = {verification.dns_server}:{verification.dns_port}",
                f"  ttl = {verification.ttl}, timeout = {verification.timeout:g} s, "
                f"propagation-timeout = {verification.propagation_timeout:g} s",
                f"  zone = {verification.zone or '(discovered)'}, check-server = "
                + (", ".join(f"{h}:{p}" for h, p in verification.check_servers) or "-"),
                (
                    f"  tsig = {verification.tsig_key_name} {verification.tsig_algorithm}, secret "
                    f"{_mask(verification.tsig_key_secret)}"
                    if verification.tsig_key_name
                    else "  tsig = none (updates are unsigned: anyone who reaches the server could send them)"
                ),
            ]
    for name, storage in settings.storages.items():
        out.append(f'[storage "{name}"] type = {storage.type}')
        if isinstance(storage, FileStorage):
            out.append(f"  directory = {storage.directory}, renew-within = {storage.renew_within_days:g} days")
    for block in settings.auth_blocks:
        methods = []
        if block.ips:
            methods.append("ip " + ", ".join(str(n) for n in block.ips))
        if block.hmac_key is not None:
            methods.append(f"hmac {block.hmac_type} key {_mask(block.hmac_key)}")
        if block.all:
            methods.append("all")
        out += [
            f'[auth "{block.name}"]',
            f"  methods = {'; '.join(methods) or 'none (accepts every client)'}",
            f"  domains = {', '.join(block.domains) or '- (never matches)'}",
            f"  verification = {block.verification}, storage = {block.storage}, "
            f"profile = {block.profile or '- (the CA default)'}",
        ]
    log = settings.logging
    out.append(f"[logging] level = {log.level}, destination = {log.destination}, format = {log.format}")
    for warning in settings.warnings:
        out.append(f"warning: {warning}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """``acmems``: ``acmems CONFIG...`` or ``acmems serve CONFIG...`` runs the server;
    ``acmems check CONFIG...`` validates and prints the configuration."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] not in _COMMANDS and not args_list[0].startswith("-"):
        args_list.insert(0, "serve")
    parser = argparse.ArgumentParser(
        prog="acmems",
        description="ACME Management Server: signs clients' CSRs through an ACME CA. "
        "'acmems CONFIG...' is short for 'acmems serve CONFIG...'.",
    )
    parser.add_argument("--version", action="version", version=f"acmems {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server", description="Run the server.")
    serve.add_argument("configs", nargs="+", metavar="CONFIG", help="INI files, merged in order")
    check = commands.add_parser(
        "check",
        help="validate the configuration and print it",
        description="Load and validate the configuration; print the resolved result (secrets masked). "
        "Exit 0 if valid, 1 if not.",
    )
    check.add_argument("configs", nargs="+", metavar="CONFIG", help="INI files, merged in order")
    listing = commands.add_parser(
        "list",
        help="list the cached certificates",
        description="List the certificates in every file storage: names, expiry, and when each is renewed.",
    )
    listing.add_argument("configs", nargs="+", metavar="CONFIG", help="INI files, merged in order")
    revoke = commands.add_parser(
        "revoke",
        help="revoke a certificate with the account key",
        description="Revoke a certificate at the CA with the account key (RFC 8555 section 7.6) and remove it "
        "from the caches, so that its CSR gets a new certificate.",
    )
    revoke.add_argument("configs", nargs="+", metavar="CONFIG", help="INI files, merged in order")
    revoke.add_argument("--cert", required=True, help="the certificate (PEM; the first block is revoked)")
    revoke.add_argument(
        "--reason",
        choices=sorted(REVOCATION_REASONS),
        default="unspecified",
        help="RFC 5280 reason (default unspecified)",
    )
    args = parser.parse_args(args_list)
    try:
        settings = load_settings(args.configs)
    except ConfigError as exc:
        print(f"acmems: configuration error: {exc.message}", file=sys.stderr)
        return 1
    if args.command == "list":
        return _list(settings)
    if args.command == "revoke":
        return _revoke(settings, args.cert, args.reason)
    if args.command == "check":
        print(describe_settings(settings))
        print("configuration is valid")
        return 0
    from acmems.logsetup import setup_logging
    from acmems.server import run

    setup_logging(settings.logging)
    try:
        return run(settings)
    except AcmemsError as exc:
        logging.getLogger("acmems").error("%s", exc.message)
        return 1


def _list(settings: Settings) -> int:
    from datetime import UTC, datetime

    from acmems.storage.file import FileCache

    now = datetime.now(UTC)
    for storage in settings.storages.values():
        if not isinstance(storage, FileStorage):
            continue
        cache = FileCache(storage)
        count = cache.load_index()
        print(f'[storage "{storage.name}"] {storage.directory}: {count} certificate(s)')
        if count:
            print(f"  {'not after (UTC)':<20} {'renew from (UTC)':<20} {'state':<8} names")
        for entry in cache.entries():
            state = "expired" if entry.not_after <= now else "due" if entry.renew_at <= now else "ok"
            print(
                f"  {entry.not_after:%Y-%m-%d %H:%M:%S}  {entry.renew_at:%Y-%m-%d %H:%M:%S}  {state:<8} "
                f"{', '.join(entry.names)}"
            )
    return 0


REVOCATION_REASONS = {
    "unspecified": 0,
    "keyCompromise": 1,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
}


def _revoke(settings: Settings, cert_path: str, reason: str) -> int:
    from cryptography import x509

    from acmems.storage.file import FileCache

    try:
        certificate = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    except (OSError, ValueError) as exc:
        print(f"acmems revoke: cannot read a certificate from {cert_path}: {exc}", file=sys.stderr)
        return 1
    ca = AcmeCa(settings.account)
    try:
        ca.load_or_create_key(create=False)
        _step(f"Revoke serial {certificate.serial_number:x} ({reason})")
        try:
            ca.revoke_sync(certificate, REVOCATION_REASONS[reason])
        except AcmemsError:
            raise
        except Exception as exc:
            raise ca_error(exc, settings.account.acme_server) from exc
        print("done")
    except AcmemsError as exc:
        print(f"failed\n{exc.message}")
        return 1
    finally:
        ca.close()
    removed = 0
    for storage in settings.storages.values():
        if isinstance(storage, FileStorage):
            cache = FileCache(storage)
            cache.load_index()
            removed += cache.remove_serial(certificate.serial_number)
    print(f"Removed it from {removed} cache entr{'y' if removed == 1 else 'ies'}")
    return 0


def _step(message: str) -> None:
    print(f"{message} ... ", end="", flush=True)


def register_main(argv: Sequence[str] | None = None) -> int:
    """``acme-register``: create the account key and register it at the CA."""
    parser = argparse.ArgumentParser(
        prog="acme-register",
        description="Create the ACME account key and register it at the CA named in the configuration.",
    )
    parser.add_argument("--version", action="version", version=f"acmems {__version__}")
    parser.add_argument("--gen-key", action="store_true", help="generate the account key if there is none")
    parser.add_argument(
        "--key-type",
        choices=("rsa", "ec"),
        default=None,
        help="account key type: ec (P-256, the default) or rsa (the default with --private-key-size)",
    )
    parser.add_argument(
        "--private-key-size",
        type=int,
        default=None,
        help="RSA bits (default 4096) or EC curve size 256/384 (default 256)",
    )
    parser.add_argument("--override-existing-key", action="store_true", help="replace an existing key with --gen-key")
    parser.add_argument("--register", action="store_true", help="register the key at the CA")
    parser.add_argument("--email", action="append", default=[], help="contact address (repeatable)")
    parser.add_argument(
        "--accept-terms-of-service",
        nargs="?",
        const="yes",
        default=None,
        metavar="URL",
        help="agree to the CA's terms (optionally naming their exact URL)",
    )
    parser.add_argument("--eab-kid", help="External Account Binding key id (ZeroSSL, Google, Sectigo)")
    parser.add_argument("--eab-hmac-key", help="External Account Binding HMAC key (base64url)")
    parser.add_argument("configs", nargs="+", metavar="CONFIG")
    # Only the --accept-terms-of-service=URL form takes a URL, so that a bare flag before the
    # configuration files does not swallow the first of them.
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(["--accept-terms-of-service=yes" if a == "--accept-terms-of-service" else a for a in raw])
    if (args.eab_kid is None) != (args.eab_hmac_key is None):
        parser.error("--eab-kid and --eab-hmac-key go together")
    try:
        settings = load_settings(args.configs)
        return _register(args, settings)
    except AcmemsError as exc:
        print(f"failed\n{exc.message}" if not isinstance(exc, ConfigError) else f"acme-register: {exc.message}")
        return 1


def _register(args: argparse.Namespace, settings: Settings) -> int:
    account = settings.account
    if account.dir is None:
        raise ConfigError("[account] needs 'dir', the folder for account.pem and registration.json")
    files = AccountFiles(account.dir)
    if args.gen_key:
        if files.has_key() and not args.override_existing_key:
            print(f"Private key exists at {files.key_path}; keeping it (--override-existing-key replaces it)")
        else:
            key_type = args.key_type or ("rsa" if args.private_key_size else "ec")
            size = args.private_key_size or (4096 if key_type == "rsa" else 256)
            if (key_type == "rsa" and size < 2048) or (key_type == "ec" and size not in (256, 384)):
                print("acme-register: --private-key-size: RSA needs >= 2048 bits; EC takes 256 or 384")
                return 1
            if files.has_key():
                for backup in files.back_up():
                    print(f"Kept the old {backup.name.split('.')[0]} as {backup}")
            _step("Generate private key")
            files.save_key(generate_key(key_type, size))
            print("done")
    else:
        _step("Load private key")
        files.load_key()
        print("done")
    key, alg = jwk_and_alg(files.load_key())
    ca = AcmeCa(account)
    _step("Initialize ACME client")
    net = ca.network(key, alg)
    try:
        directory = ca.fetch_directory(net)
    except Exception as exc:
        raise ca_error(exc, account.acme_server) from exc
    client = acme_client.ClientV2(directory, net)
    print("done")
    tos = directory.meta.terms_of_service
    accept = args.accept_terms_of_service
    if accept is not None and accept != "yes" and accept != tos:
        print(f"The CA's terms of service are at {tos}, not {accept}; read them and accept that URL")
        return 1
    agreed = accept is not None or account.accepts_terms(tos)
    emails = tuple(args.email) or account.emails
    eab_kid = args.eab_kid or account.eab_kid
    eab_key = args.eab_hmac_key or account.eab_hmac_key
    try:
        return _register_at_ca(args, files, client, directory, key, tos, agreed, emails, eab_kid, eab_key)
    except AcmemsError:
        raise
    except Exception as exc:
        raise ca_error(exc, account.acme_server, net.last_response) from exc


def _register_at_ca(
    args: argparse.Namespace,
    files: AccountFiles,
    client: acme_client.ClientV2,
    directory: messages.Directory,
    key: object,
    tos: str | None,
    agreed: bool,
    emails: tuple[str, ...],
    eab_kid: str | None,
    eab_key: str | None,
) -> int:
    assert isinstance(key, JWK)
    regr = files.load_registration()
    if args.register:
        if tos is not None and not agreed:
            print(f"You need to accept the terms of service at {tos}")
            print(f"Run again with --accept-terms-of-service={tos} once you have read them.")
            return 1
        if directory.meta.external_account_required and eab_kid is None:
            print(
                "The CA requires External Account Binding: pass --eab-kid and --eab-hmac-key "
                "(or set eab-kid and eab-hmac-key in [account]); the CA's website gives both."
            )
            return 1
        _step("Register")
        request = new_registration(key, directory, emails, tos is not None and agreed, eab_kid, eab_key)
        regr = create_account(client, request)
        files.save_registration(regr)
        print("done")
        print(f"Account: {regr.uri}")
        return 0
    if regr is None:
        print("No registration yet: run again with --register.")
        return 1 if args.accept_terms_of_service is not None else 0
    _step("Refreshing current registration")
    client.net.account = regr
    regr = client.query_registration(regr)
    files.save_registration(regr)
    print("done")
    if args.accept_terms_of_service is not None and tos is not None:
        _step(f"Accepting ToS at {tos}")
        regr = client.update_registration(regr, regr.body.update(terms_of_service_agreed=True))
        files.save_registration(regr)
        print("done")
    return 0
