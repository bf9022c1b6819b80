"""``acme-register``: create the account key and register it at the CA (the original's command,
with its progress lines)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from acme import client as acme_client
from acme import messages
from josepy.jwk import JWK

from acmems import __version__
from acmems.ca import account as acme_account
from acmems.ca.account_files import AccountFiles, generate_key, jwk_and_alg
from acmems.ca.problems import ca_error
from acmems.config import load_settings
from acmems.core.settings import Settings
from acmems.errors import AcmemsError, ConfigError

__all__ = ["main"]


def _step(message: str) -> None:
    print(f"{message} ... ", end="", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
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
    parser.add_argument(
        "--account",
        default="default",
        metavar="NAME",
        help='register [account "NAME"] (default: the unnamed [account])',
    )
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
    if args.account != "default" and args.account not in settings.accounts:
        known = ", ".join(["default", *sorted(settings.accounts)])
        raise ConfigError(f'the configuration has no [account "{args.account}"] (defined: {known})')
    account = settings.account_named(args.account)
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
            files.save_key(generate_key(key_type, size), replace=True)
            print("done")
    else:
        _step("Load private key")
        files.load_key()
        print("done")
    key, alg = jwk_and_alg(files.load_key())
    _step("Initialize ACME client")
    net = acme_account.ca_network(account, key, alg)
    try:
        directory = acme_account.fetch_directory(account, net)
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
    key: JWK,
    tos: str | None,
    agreed: bool,
    emails: tuple[str, ...],
    eab_kid: str | None,
    eab_key: str | None,
) -> int:
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
        request = acme_account.new_registration(key, directory, emails, tos is not None and agreed, eab_kid, eab_key)
        regr = acme_account.create_account(client, request)
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
