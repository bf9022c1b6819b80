"""Orders of acmems' ACME server (RFC 8555 §7.4, §7.5): newOrder checked against the account's
auth block, authorizations valid by that policy (or by acmems' own http-01 check), finalize through
the same issuance path as ``POST /sign``, and the certificate.

A finalized order is ``processing`` while the issuer works; every poll of the order asks the issuer
again for the same CSR (its single flight joins the running order, its cache answers a finished
one), so any instance of a cluster finishes an order another instance began."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acmems.acme_server.jws import b64decode
from acmems.acme_server.problems import AcmeProblem, from_error, problem_from_json
from acmems.acme_server.service import Call
from acmems.acme_server.views import Reply, authz_view, order_view
from acmems.core.acme_records import AcmeAuthz, AcmeCertificate, AcmeOrder, Identifier, new_id
from acmems.core.csr import CsrInfo, check_name, parse_csr
from acmems.core.policy import address_allowed, domain_allowed
from acmems.core.settings import AuthSettings, Http01Verification
from acmems.errors import AcmemsError, CsrError, Kind

__all__ = [
    "ORDER_LIFETIME",
    "authorization",
    "authorization_for",
    "certificate",
    "csr_difference",
    "finalize",
    "new_order",
    "order",
    "status_after",
]

log = logging.getLogger("acmems.acme_server")
ORDER_LIFETIME = 7 * 86400.0  # an order (and its authorizations) expires after this
FINALIZE_WAIT = 10.0  # finalize waits this long for the certificate before answering "processing"
POLL_WAIT = 5.0  # a poll of a processing order waits this long for it
RETRY_AFTER = 1  # what a processing order tells the client to wait
_MAX_IDENTIFIERS = 100


def _identifier(value: Any) -> Identifier:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str) or not isinstance(value.get("value"), str):
        raise AcmeProblem("malformed", "each identifier must be an object with a type and a value")
    kind, text = value["type"], value["value"]
    if kind == "ip":
        try:
            return Identifier("ip", str(ipaddress.ip_address(text)))
        except ValueError:
            raise AcmeProblem("malformed", f"identifier {text!r} is not an IP address") from None
    if kind != "dns":
        raise AcmeProblem("unsupportedIdentifier", f"identifier type {kind!r} is not supported (dns, ip)")
    try:
        return Identifier("dns", check_name(text, "identifier"))
    except CsrError as exc:
        raise AcmeProblem("rejectedIdentifier", exc.message) from None


def _refused(block: AuthSettings, identifier: Identifier, dns01: bool) -> str | None:
    if identifier.type == "ip":
        return None if address_allowed(block, identifier.value) else "not allowed for this account"
    if identifier.value.startswith("*.") and not dns01:
        return "a wildcard needs a DNS-01 verification, which this account's auth block does not use"
    return None if domain_allowed(block, identifier.value) else "not allowed for this account"


def _uses_dns01(call: Call) -> bool:
    # every verification but http01 proves names by DNS (as the configuration's own check has it)
    return not isinstance(call.runtime.settings.verifications.get(call.auth_block.verification), Http01Verification)


def authorization_for(
    identifier: Identifier, account: str, expires: float, now: float, *, validate: bool, dns01: bool
) -> AcmeAuthz:
    """The authorization of one identifier of a new order: valid at once (the block's policy is the
    proof), or pending with an http-01 challenge when the block validates (never for a wildcard,
    whose proof is acmems' DNS-01)."""
    wildcard = identifier.value.startswith("*.")
    base = Identifier(identifier.type, identifier.value.removeprefix("*."))
    if validate and not wildcard:
        return AcmeAuthz(new_id(), account, base, expires, "pending", False, "http-01", new_id(), "pending")
    kind = "dns-01" if dns01 or wildcard else "http-01"
    return AcmeAuthz(new_id(), account, base, expires, "valid", wildcard, kind, new_id(), "valid", now)


def status_after(authz_statuses: list[str]) -> str:
    """A pending order's status from its authorizations' (RFC 8555 §7.1.6): ready once all are
    valid, invalid once one is invalid or deactivated, else pending."""
    if all(s == "valid" for s in authz_statuses):
        return "ready"
    if any(s in ("invalid", "deactivated", "expired", "revoked") for s in authz_statuses):
        return "invalid"
    return "pending"


def csr_difference(order_names: set[str], csr_names: set[str]) -> str | None:
    """What is wrong with a CSR for an order (None: it names exactly the order's identifiers)."""
    extra, missing = sorted(csr_names - order_names), sorted(order_names - csr_names)
    if not extra and not missing:
        return None
    parts = ([f"names {', '.join(extra)}, which the order does not"] if extra else []) + (
        [f"lacks {', '.join(missing)} of the order"] if missing else []
    )
    return "the CSR " + " and ".join(parts)


def _check_policy(call: Call, identifiers: list[Identifier]) -> None:
    block = call.auth_block
    dns01 = _uses_dns01(call)
    subproblems: list[dict[str, Any]] = []
    refused: list[str] = []
    for identifier in identifiers:
        reason = _refused(block, identifier, dns01)
        if reason is not None:
            refused.append(identifier.value)
            subproblems.append(
                {
                    "type": "urn:ietf:params:acme:error:rejectedIdentifier",
                    "detail": f"{identifier.value}: {reason}",
                    "identifier": identifier.as_json(),
                }
            )
    if subproblems:
        raise AcmeProblem(
            "rejectedIdentifier",
            f"not allowed for this account: {', '.join(refused)} (its auth block's domain/address policy)",
            subproblems=subproblems,
        )


async def new_order(call: Call) -> Reply:
    """newOrder (§7.4)."""
    payload = call.jws.payload_json()
    raw = payload.get("identifiers")
    if not isinstance(raw, list) or not raw:
        raise AcmeProblem("malformed", "newOrder needs a non-empty list of identifiers")
    if len(raw) > _MAX_IDENTIFIERS:
        raise AcmeProblem("rejectedIdentifier", f"at most {_MAX_IDENTIFIERS} identifiers per order")
    if "notBefore" in payload or "notAfter" in payload:
        raise AcmeProblem("malformed", "notBefore and notAfter are not supported; leave them out")
    identifiers = list(dict.fromkeys(_identifier(i) for i in raw))
    _check_policy(call, identifiers)
    profile = payload.get("profile")
    if profile is not None and not isinstance(profile, str):
        raise AcmeProblem("malformed", "profile must be a string")
    replaces = await _replaced(call, payload.get("replaces"))
    now = time.time()
    expires = now + ORDER_LIFETIME
    validate = call.auth_block.acme_challenge == "http-01"
    dns01 = _uses_dns01(call)
    authzs = [authorization_for(i, call.owner.id, expires, now, validate=validate, dns01=dns01) for i in identifiers]
    status = "ready" if all(a.status == "valid" for a in authzs) else "pending"
    order = AcmeOrder(
        new_id(),
        call.owner.id,
        tuple(identifiers),
        tuple(a.id for a in authzs),
        expires,
        status,
        profile=profile,
        replaces=replaces,
        created=now,
    )
    await call.store.add_order(order, authzs)
    return Reply(201, order_view(order, call.urls), headers={"Location": call.urls.of("order", order.id)})


async def _replaced(call: Call, replaces: object) -> str | None:
    """``replaces`` (RFC 9773) to relay upstream: only for a certificate acmems gave this account
    (another CA's or account's id is left out, as the RFC allows, instead of failing the order)."""
    if replaces is None:
        return None
    if not isinstance(replaces, str) or "." not in replaces:
        raise AcmeProblem("malformed", "replaces must be an ARI certificate id (keyIdentifier.serial)")
    serial = int.from_bytes(b64decode(replaces.partition(".")[2], "the serial of replaces"), "big")
    replaced = await call.store.certificate_by_serial(f"{serial:x}")
    if replaced is None or replaced.account != call.owner.id:
        log.info("ACME account %s: replaces %s is not a certificate it got here; not relayed", call.owner.id, replaces)
        return None
    return replaces


async def _own_order(call: Call, order_id: str) -> AcmeOrder:
    found = await call.store.order(order_id)
    if found is None or found.account != call.owner.id:
        raise AcmeProblem("notFound", "no such order for this account")
    if found.status in ("pending", "ready") and time.time() > found.expires:
        problem = AcmeProblem("malformed", "the order expired; create a new one")
        found = dataclasses.replace(found, status="invalid", error=problem.to_json())
        await call.store.save_order(found)
    return found


def _answer(call: Call, found: AcmeOrder) -> Reply:
    headers = {"Location": call.urls.of("order", found.id)}
    if found.status == "processing":
        headers["Retry-After"] = str(RETRY_AFTER)
    elif found.status == "invalid" and found.error is not None:
        retry = problem_from_json(found.error).retry_after
        if retry is not None:
            headers["Retry-After"] = str(retry)  # the upstream rate limit's, or the block's quota's
    return Reply(200, order_view(found, call.urls), headers=headers)


async def order(call: Call) -> Reply:
    """The order (POST-as-GET); a processing one is carried on."""
    found = await _own_order(call, call.ident)
    if found.status == "pending":
        found = await refresh_status(call, found)
    if found.status == "processing":
        found = await carry_on(call, found, POLL_WAIT)
    return _answer(call, found)


async def refresh_status(call: Call, found: AcmeOrder) -> AcmeOrder:
    """A pending order becomes ready once every authorization is valid, invalid once one is."""
    statuses = []
    for authz_id in found.authorizations:
        authz = await call.store.authz(authz_id)
        statuses.append(authz.status if authz is not None else "invalid")
    status = status_after(statuses)
    if status == "pending":
        return found
    error = (
        AcmeProblem("unauthorized", "an authorization of this order failed").to_json() if status == "invalid" else None
    )
    found = dataclasses.replace(found, status=status, error=error)
    await call.store.save_order(found)
    return found


def _chosen_profile(block: AuthSettings, asked: str | None) -> str | None:
    return block.profile if block.own_profile or asked is None else asked


async def carry_on(call: Call, found: AcmeOrder, wait: float) -> AcmeOrder:
    """Ask the issuer for the order's certificate (joining a running issuance, or starting it again
    after a restart); ``wait`` seconds at most. The order as it is afterwards."""
    assert found.csr is not None
    block = call.auth_block
    csr = parse_csr(found.csr.encode())
    profile = _chosen_profile(block, found.profile)
    try:
        result = await call.runtime.issuer.sign(
            csr, dataclasses.replace(block, profile=profile), wait, replaces=found.replaces, client=found.account
        )
    except AcmemsError as exc:
        if exc.kind is Kind.STILL_ISSUING:
            return found
        log.warning("ACME order %s (account %s) failed: %s", found.id, found.account, exc.message)
        failed = dataclasses.replace(found, status="invalid", error=from_error(exc).to_json())
        await call.store.save_order(failed)
        return failed
    leaf = x509.load_pem_x509_certificate(result.chain)
    record = AcmeCertificate(
        found.id, found.account, found.id, f"{leaf.serial_number:x}", result.chain.decode(), block.storage
    )
    await call.store.add_certificate(record)
    done = dataclasses.replace(found, status="valid", certificate=record.id)
    await call.store.save_order(done)
    return done


def _csr_of(payload: dict[str, Any]) -> CsrInfo:
    der = b64decode(payload.get("csr"), "csr")
    try:
        request = x509.load_der_x509_csr(der)
    except ValueError:
        raise AcmeProblem("badCSR", "the csr is not a DER certificate request") from None
    pem = request.public_bytes(serialization.Encoding.PEM)
    try:
        return parse_csr(pem)
    except CsrError as exc:
        raise AcmeProblem("badCSR", exc.message) from None


async def finalize(call: Call) -> Reply:
    """finalize (§7.4): the CSR must name exactly the order's identifiers."""
    found = await _own_order(call, call.ident)
    if found.status == "pending":
        found = await refresh_status(call, found)
    if found.status != "ready":
        raise AcmeProblem("orderNotReady", f"the order is {found.status}, not ready")
    csr = _csr_of(call.jws.payload_json())
    wrong = csr_difference({i.value for i in found.identifiers}, set(csr.names))
    if wrong is not None:
        raise AcmeProblem("badCSR", wrong)
    # the block may have changed since the order (a reload): its policy now decides
    _check_policy(call, list(found.identifiers))
    processing = dataclasses.replace(found, status="processing", csr=csr.pem.decode())
    await call.store.save_order(processing)
    return _answer(call, await carry_on(call, processing, FINALIZE_WAIT))


async def authorization(call: Call) -> Reply:
    """An authorization (POST-as-GET, or deactivation)."""
    found = await call.store.authz(call.ident)
    if found is None or found.account != call.owner.id:
        raise AcmeProblem("notFound", "no such authorization for this account")
    if not call.jws.post_as_get:
        payload = call.jws.payload_json()
        if payload.get("status") != "deactivated":
            raise AcmeProblem("malformed", "an authorization's status can only be set to deactivated")
        found = dataclasses.replace(found, status="deactivated")
        await call.store.save_authz(found)
    return Reply(200, authz_view(found, call.urls), headers={"Location": call.urls.of("authz", found.id)})


async def certificate(call: Call) -> Reply:
    """The certificate chain (POST-as-GET)."""
    found = await call.store.certificate(call.ident)
    if found is None or found.account != call.owner.id:
        raise AcmeProblem("notFound", "no such certificate for this account")
    ordered = await call.store.order(found.order)
    if call.picked_up is not None and ordered is not None and ordered.csr is not None:
        # who fetched what, for /status and the not-picked-up events: this account, at this address
        block = dataclasses.replace(call.auth_block, profile=_chosen_profile(call.auth_block, ordered.profile))
        call.picked_up(
            block, parse_csr(ordered.csr.encode()), f"{call.peer} (ACME account {found.account})", found.chain.encode()
        )
    return Reply(200, found.chain.encode(), content_type="application/pem-certificate-chain")
