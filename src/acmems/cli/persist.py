"""``acmems persist-record CONFIG NAME... [--publish]``: the dns-persist-01 TXT records to publish.

For each name (``*.NAME`` asks for ``policy=wildcard``): ``_validation-persist.NAME``, the issuer
domain name the CA names (its directory's ``caaIdentities``, or ``--issuer``) and this account's URI.
With ``--publish``, where the verification block names a dns-server, the record is added there once
(an existing one is left as it is); it is never deleted by acmems.
"""

from __future__ import annotations

from acmems.ca import account as acme_account
from acmems.ca.account_files import AccountFiles, jwk_and_alg
from acmems.challenges.dns01_update import DnsUpdateSolver
from acmems.challenges.dns_persist import persist_matches, persist_name, persist_record
from acmems.challenges.dns_servers import where
from acmems.cli.dns import verification_for
from acmems.core.policy import domain_allowed
from acmems.core.settings import AccountSettings, DnsPersistVerification, Settings
from acmems.errors import AcmemsError, CaError, ConfigError, DnsUpdateError, Kind

__all__ = ["persist_records"]


def _account_for(settings: Settings, name: str) -> AccountSettings:
    block = next((b for b in settings.auth_blocks if domain_allowed(b, name)), None)
    return settings.account_named(block.ca[0]) if block is not None else settings.account


def account_and_issuer(account: AccountSettings, issuer: str | None) -> tuple[str, str]:
    """This account's URI (from registration.json) and the CA's issuer domain name."""
    if account.dir is None:
        raise ConfigError(f"[account] of {account.acme_server} needs 'dir' (registration.json names the account)")
    files = AccountFiles(account.dir)
    registration = files.load_registration()
    if registration is None or not registration.uri:
        raise ConfigError(f"no account is registered in {account.dir}: run acme-register first")
    if issuer is not None:
        return registration.uri, issuer
    key, alg = jwk_and_alg(files.load_key())
    try:
        directory = acme_account.fetch_directory(account, acme_account.ca_network(account, key, alg))
    except Exception as exc:
        raise CaError(f"cannot read the directory {account.acme_server}: {exc}", kind=Kind.CA_UNREACHABLE) from None
    names = directory.meta.caa_identities or ()
    if not names:
        raise CaError(
            f"the CA {account.acme_server} names no issuer domain (caaIdentities); give it with --issuer",
            kind=Kind.VALIDATION_FAILED,
        )
    return registration.uri, names[0]


async def _publish(verification: DnsPersistVerification, name: str, value: str) -> str:
    if verification.update is None:
        return f'  not published: [verification "{verification.name}"] names no dns-server'
    solver = DnsUpdateSolver(verification.update)
    chain = await solver.chain(name)
    target = chain.target
    if value in await solver.servers.txt_values(target):
        return f"  already published at {where(solver.servers.servers[0])}"
    try:
        zone = await solver.zone_for(target)
        server = await solver.servers.update(zone, target, value, verification.update.ttl, delete=False)
    except DnsUpdateError as exc:
        raise solver.via(chain, exc) from None
    return f"  published at {where(server)} in zone {zone}" + (f" (via {chain.describe()})" if chain.hops else "")


async def persist_records(
    settings: Settings, names: list[str], *, publish: bool, issuer: str | None, chosen: str | None
) -> int:
    """Print (and publish) the records; 0 if all went well, 1 otherwise."""
    wanted: dict[str, bool] = {}  # base name -> wildcard asked
    for raw in names:
        name = raw.strip().rstrip(".").lower()
        base = name.removeprefix("*.")
        wanted[base] = wanted.get(base, False) or name.startswith("*.")
    failed = 0
    for base, wildcard in wanted.items():
        shown = f"*.{base}" if wildcard else base
        verification = verification_for(settings, base, chosen, ("dns01-persist",))
        if isinstance(verification, str):
            print(f"{shown}: {verification}")
            failed += 1
            continue
        assert isinstance(verification, DnsPersistVerification)
        try:
            uri, issuer_name = account_and_issuer(_account_for(settings, base), issuer)
            value = persist_record(issuer_name, uri, wildcard=wildcard)
            print(f'{persist_name(base)}. IN TXT "{value}"')
            assert persist_matches(value, (issuer_name,), uri, wildcard=wildcard)
            if publish:
                print(await _publish(verification, persist_name(base), value))
        except AcmemsError as exc:
            print(f"{shown}: {exc.message}")
            failed += 1
    return 1 if failed else 0
