"""The ``acmems`` command: ``serve`` (the default), ``check``, ``list`` and ``revoke``.

``acme-register`` is :mod:`acmems.register_cli`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from acmems import __version__, acme_account
from acmems.account import AccountFiles, jwk_and_alg
from acmems.acme_problems import ca_error
from acmems.config import load_settings
from acmems.describe import describe_settings
from acmems.errors import AcmemsError, ConfigError
from acmems.settings import Settings
from acmems.storage import CertificateStore, make_store

__all__ = ["REVOCATION_REASONS", "main"]

# command: (help, description)
_COMMANDS = {
    "serve": ("run the server", "Run the server."),
    "check": (
        "validate the configuration and print it",
        "Load and validate the configuration; print the resolved result (secrets masked). Exit 0 if valid, 1 if not.",
    ),
    "list": (
        "list the cached certificates",
        "List the certificates in every storage: names, expiry, and when each is renewed.",
    ),
    "revoke": (
        "revoke a certificate with the account key",
        "Revoke a certificate at the CA with the account key (RFC 8555 section 7.6) and remove it "
        "from the caches, so that its CSR gets a new certificate.",
    ),
}


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
    parsers = {}
    for name, (summary, description) in _COMMANDS.items():
        parsers[name] = commands.add_parser(name, help=summary, description=description)
        parsers[name].add_argument("configs", nargs="+", metavar="CONFIG", help="INI files, merged in order")
    revoke = parsers["revoke"]
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


def _stores(settings: Settings) -> list[CertificateStore]:
    stores = [make_store(storage) for storage in settings.storages.values()]
    for store in stores:
        asyncio.run(store.load_index())
    return [s for s in stores if s.where != "-"]


def _list(settings: Settings) -> int:
    now = datetime.now(UTC)
    for store in _stores(settings):
        count = store.count()
        print(f'[storage "{store.name}"] {store.where}: {count} certificate(s)')
        if count:
            print(f"  {'not after (UTC)':<20} {'renew from (UTC)':<20} {'state':<8} names")
        for entry in store.entries():
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
    try:
        certificate = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    except (OSError, ValueError) as exc:
        print(f"acmems revoke: cannot read a certificate from {cert_path}: {exc}", file=sys.stderr)
        return 1
    account = settings.account
    try:
        if account.dir is None:
            raise ConfigError("[account] needs 'dir', the folder for account.pem and registration.json")
        files = AccountFiles(account.dir)
        key, alg = jwk_and_alg(files.load_key())
        _step(f"Revoke serial {certificate.serial_number:x} ({reason})")
        try:
            acme_account.revoke(account, files, key, alg, certificate, REVOCATION_REASONS[reason])
        except AcmemsError:
            raise
        except Exception as exc:
            raise ca_error(exc, account.acme_server) from exc
        print("done")
    except AcmemsError as exc:
        print(f"failed\n{exc.message}")
        return 1
    removed = sum(asyncio.run(store.remove_serial(certificate.serial_number)) for store in _stores(settings))
    print(f"Removed it from {removed} cache entr{'y' if removed == 1 else 'ies'}")
    return 0


def _step(message: str) -> None:
    print(f"{message} ... ", end="", flush=True)
