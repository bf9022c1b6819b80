"""The ``acmems`` command: ``serve`` (the default), ``check``, ``list``, ``revoke``, ``import``, ``db init``,
``dns-check``, ``persist-record``.

``acme-register`` is :mod:`acmems.cli.register`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509

from acmems import __version__
from acmems.cli import store as store_cli
from acmems.config import load_settings
from acmems.config.describe import describe_settings
from acmems.core.settings import Settings
from acmems.errors import AcmemsError, ConfigError

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
    "import": (
        "copy the certificates of one storage into another",
        "Copy every certificate of --from (a file cache, the original's layout too) into --to "
        "(e.g. a type = database storage of a cluster).",
    ),
    "dns-check": (
        "show where each name's DNS-01 TXT value would go",
        "For each NAME: the CNAME chain of _acme-challenge.NAME at the dns-server, the zone and server "
        "its TXT value would go to, and with --try whether the key can add and delete a probe value there. "
        "Exit 0 if every name can be served, 1 if not.",
    ),
    "persist-record": (
        "print the dns-persist-01 TXT record of each name",
        "For each NAME (*.NAME: with policy=wildcard): the _validation-persist TXT record that lets this "
        "account be issued certificates for it by dns-persist-01, with the issuer domain name the CA names. "
        "--publish adds it at the verification block's dns-server (once; acmems never deletes it).",
    ),
    "eab": (
        "print an auth block's external account binding for ACME clients",
        "'acmems eab CONFIG BLOCK': the EAB key id and MAC key an ACME client of [acme-server] needs "
        "to bind its account to auth block BLOCK (key id: the block's name; MAC key: its hmac_key, "
        "base64url without padding).",
    ),
    "db": (
        "set up the cluster database",
        "'acmems db init CONFIG': create or upgrade the tables of the [cluster] database (run it as "
        "their owner when acmems' own role may not create tables).",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    """``acmems``: ``acmems CONFIG...`` or ``acmems serve CONFIG...`` runs the server;
    ``acmems check CONFIG...`` validates and prints the configuration."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] not in _COMMANDS and not args_list[0].startswith("-"):
        args_list.insert(0, "serve")
    args = _parser().parse_args(args_list)
    try:
        settings = load_settings(args.configs)
    except ConfigError as exc:
        print(f"acmems: configuration error: {exc.message}", file=sys.stderr)
        return 1
    return _RUNNERS.get(args.command, _serve)(settings, args)


def _parser() -> argparse.ArgumentParser:
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
        if name == "db":
            parsers[name].add_argument("action", choices=["init"])
        if name == "eab":
            parsers[name].add_argument("configs", nargs=1, metavar="CONFIG", help="the INI file")
            parsers[name].add_argument("block", metavar="BLOCK", help="the auth block (its name)")
            continue
        if name in ("dns-check", "persist-record"):
            parsers[name].add_argument("configs", nargs=1, metavar="CONFIG", help="the INI file")
            parsers[name].add_argument("names", nargs="+", metavar="NAME", help="names (a wildcard: *.NAME)")
            continue
        parsers[name].add_argument("configs", nargs="+", metavar="CONFIG", help="INI files, merged in order")
    parsers["dns-check"].add_argument(
        "--try", dest="try_key", action="store_true", help="add and delete a probe TXT value with the key"
    )
    parsers["dns-check"].add_argument("--verification", metavar="BLOCK", help="the verification block to use")
    persist = parsers["persist-record"]
    persist.add_argument("--publish", action="store_true", help="add it at the block's dns-server")
    persist.add_argument("--issuer", help="the issuer domain name (default: the CA's first caaIdentities)")
    persist.add_argument("--verification", metavar="BLOCK", help="the verification block to use")
    parsers["import"].add_argument("--from", dest="source", required=True, metavar="STORAGE")
    parsers["import"].add_argument("--to", dest="target", required=True, metavar="STORAGE")
    revoke = parsers["revoke"]
    revoke.add_argument("--cert", required=True, help="the certificate (PEM; the first block is revoked)")
    revoke.add_argument(
        "--reason",
        choices=sorted(REVOCATION_REASONS),
        default="unspecified",
        help="RFC 5280 reason (default unspecified)",
    )
    return parser


def _check(settings: Settings, args: argparse.Namespace) -> int:
    print(describe_settings(settings))
    database = _run(store_cli.check_database(settings))
    if database is not None:
        print(database)
    print("configuration is valid")
    return 0


def _dns_check(settings: Settings, args: argparse.Namespace) -> int:
    from acmems.cli.dns import dns_check

    return _run(dns_check(settings, args.names, try_key=args.try_key, chosen=args.verification))


def _persist_record(settings: Settings, args: argparse.Namespace) -> int:
    from acmems.cli.persist import persist_records

    return _run(
        persist_records(settings, args.names, publish=args.publish, issuer=args.issuer, chosen=args.verification)
    )


def _store_command(settings: Settings, args: argparse.Namespace) -> int:
    work: Coroutine[Any, Any, int]
    if args.command == "list":
        work = store_cli.list_certificates(settings)
    elif args.command == "import":
        work = store_cli.import_certificates(settings, args.source, args.target)
    else:
        work = store_cli.db_init(settings)
    try:
        return _run(work)
    except AcmemsError as exc:
        print(f"acmems {args.command}: {exc.message}", file=sys.stderr)
        return 1


def _eab(settings: Settings, args: argparse.Namespace) -> int:
    # The values are secrets: printed to the operator who can read the configuration anyway.
    block = next((b for b in settings.auth_blocks if b.name == args.block), None)
    if block is None:
        names = ", ".join(b.name for b in settings.auth_blocks) or "none"
        print(f"acmems eab: no auth block {args.block!r} (defined: {names})", file=sys.stderr)
        return 1
    if block.hmac_key is None:
        print(
            f"acmems eab: auth block {block.name!r} has no hmac_key; its ACME clients need no EAB "
            "(or give it hmac_type and hmac_key)",
            file=sys.stderr,
        )
        return 1
    if settings.acme_server is None:
        print("acmems eab: note: the configuration has no [acme-server] section yet", file=sys.stderr)
    from josepy import b64 as jose_b64  # loaded for this command only, like the ACME client for revoke

    mac_key = jose_b64.b64encode(block.hmac_key).decode()  # base64url without padding, as clients want it
    print(f"kid: {block.name}\nhmac: {mac_key}")
    return 0


def _revoke_command(settings: Settings, args: argparse.Namespace) -> int:
    return _revoke(settings, args.cert, args.reason)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from acmems.logsetup import setup_logging
    from acmems.server import run

    setup_logging(settings.logging)
    try:
        return run(settings)
    except AcmemsError as exc:
        logging.getLogger("acmems").error("%s", exc.message)
        return 1


# the command -> what runs it (anything else: serve)
_RUNNERS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "check": _check,
    "dns-check": _dns_check,
    "persist-record": _persist_record,
    "list": _store_command,
    "import": _store_command,
    "db": _store_command,
    "revoke": _revoke_command,
    "eab": _eab,
}


T = TypeVar("T")


def _run(work: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(work)


REVOCATION_REASONS = {
    "unspecified": 0,
    "keyCompromise": 1,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
}


def _revoke(settings: Settings, cert_path: str, reason: str) -> int:
    # The ACME client is loaded for this command only (the others start faster without it).
    from acmems.ca import account as acme_account
    from acmems.ca.account_files import AccountFiles, jwk_and_alg
    from acmems.ca.problems import ca_error

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
    try:
        removed = _run(store_cli.remove_serial(settings, certificate.serial_number))
    except AcmemsError as exc:
        print(f"the CA revoked it, but it could not be taken out of the caches: {exc.message}")
        return 1
    print(f"Removed it from {removed} cache entr{'y' if removed == 1 else 'ies'}")
    return 0


def _step(message: str) -> None:
    print(f"{message} ... ", end="", flush=True)
