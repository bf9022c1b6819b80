"""``acmems dns-check CONFIG NAME... [--try]``: where each name's DNS-01 TXT value would go.

For each name: the verification block that serves it (the first auth block allowing it, or the
default), the CNAME chain of ``_acme-challenge.<name>`` at the primary, the zone and server the
value goes to, and with ``--try`` whether the key can add and delete a probe value there.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from acmems.challenges import make_dns_update_solver
from acmems.challenges.dns01_update import DnsUpdateSolver, challenge_name
from acmems.challenges.dns_servers import where
from acmems.core.policy import domain_allowed
from acmems.core.settings import Settings, VerificationSettings
from acmems.errors import AcmemsError, DnsUpdateError
from acmems.storage.dns_journal import DnsRecord

__all__ = ["dns_check", "verification_for"]


def verification_for(
    settings: Settings, name: str, chosen: str | None, types: tuple[str, ...]
) -> VerificationSettings | str:
    """The verification block for ``name`` (the first auth block allowing it, or the default;
    ``chosen`` names it) if it is of one of ``types``, or why there is none."""
    block_name = chosen
    if block_name is None:
        block = next((b for b in settings.auth_blocks if domain_allowed(b, name.removeprefix("*."))), None)
        block_name = block.verification if block is not None else settings.default_verification
    if block_name is None:
        return "no auth block allows it and there is no default verification"
    verification = settings.verifications.get(block_name)
    if verification is None:
        return f"there is no [verification {block_name!r}]"
    if verification.type not in types:
        return f'[verification "{block_name}"] is type = {verification.type}, not {" or ".join(types)}'
    return verification


async def _check_one(solver: DnsUpdateSolver, name: str, try_key: bool) -> None:
    chain = await solver.chain(challenge_name(name))
    print(f"  chain: {chain.describe()}" + ("" if chain.hops else " (no CNAME)"))
    try:
        zone = await solver.zone_for(chain.target)
        print(f"  TXT goes to {chain.target} in zone {zone} at {where(solver.writer.places[0])}")
        if not try_key:
            return
        probe = "acmems-probe-" + secrets.token_hex(8)
        ttl = solver.settings.ttl
        server = await solver.writer.add(zone, chain.target, probe, ttl)
        try:
            await solver.writer.delete(DnsRecord(*server, zone, chain.target, probe), ttl)
        except DnsUpdateError as exc:
            raise DnsUpdateError(
                f"the probe was added but cannot be deleted ({exc.message}); remove {chain.target} TXT "
                f'"{probe}" by hand',
                kind=exc.kind,
            ) from None
        print(f"  probe added and deleted: ok (at {where(server)})")
    except DnsUpdateError as exc:
        raise solver.via(chain, exc) from None


async def dns_check(settings: Settings, names: Sequence[str], *, try_key: bool, chosen: str | None) -> int:
    """Print the report; 0 when every name can be served, 1 otherwise."""
    failed = 0
    solvers: dict[str, DnsUpdateSolver] = {}
    for name in names:
        name = name.strip().rstrip(".").lower()
        verification = verification_for(settings, name, chosen, ("dns01-dnsUpdate", "dns01-lexicon"))
        if isinstance(verification, str):
            print(f"{name}: not checked: {verification}")
            failed += 1
            continue
        print(f'{name} (verification "{verification.name}")')
        if verification.name not in solvers:
            solvers[verification.name] = make_dns_update_solver(verification)
        solver = solvers[verification.name]
        try:
            await _check_one(solver, name, try_key)
        except AcmemsError as exc:
            print(f"  error: {exc.message}")
            failed += 1
    return 1 if failed else 0
