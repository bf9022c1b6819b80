"""acmems' ACME server (RFC 8555): the checks every POST passes (JWS, ``url``, nonce, account and
its auth block), then the resource. Accounts live here; orders in :mod:`acmems.acme_server.orders`,
revocation and renewalInfo in :mod:`acmems.acme_server.revocation`.

An account is bound to one auth block: the block its external account binding names (key id =
block name, MAC key = the block's ``hmac_key``), or else the first block that needs no HMAC and
whose ``ip`` list holds the client. Every later request must come from an address that block allows.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from acmems.acme_server.jws import SignedRequest, check_eab, parse_jws, thumbprint, verify
from acmems.acme_server.problems import AcmeProblem
from acmems.acme_server.views import Reply, Urls, account_view
from acmems.ca.session import AcmeCa
from acmems.core.acme_records import AcmeAccount, new_id
from acmems.core.csr import CsrInfo
from acmems.core.policy import IPAddress, ip_allows
from acmems.core.settings import AuthSettings, Settings
from acmems.issuance.issuer import Issuer
from acmems.storage import CertificateStore
from acmems.storage.acme_store import AcmeStore, KeyInUse

__all__ = ["AcmeRuntime", "Call", "Resource", "check_account", "new_account", "update_account"]

log = logging.getLogger("acmems.acme_server")


class AcmeRuntime(Protocol):
    """What the ACME server needs of the configuration in force (the server's Runtime)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def issuer(self) -> Issuer: ...

    @property
    def caches(self) -> Mapping[str, CertificateStore]: ...

    @property
    def cas(self) -> Mapping[str, AcmeCa]: ...


@dataclass(frozen=True, slots=True)
class Call:
    """One POST whose JWS form, ``url`` and nonce are checked; ``account`` and ``block`` are set
    (and the signature verified with the account's key) for resources that take a ``kid``."""

    urls: Urls
    url: str
    ident: str  # the id in the URL path (an account, order, authorization, ...)
    peer: IPAddress
    jws: SignedRequest
    runtime: AcmeRuntime
    store: AcmeStore
    account: AcmeAccount | None = None
    block: AuthSettings | None = None
    picked_up: Callable[[AuthSettings, CsrInfo, str, bytes], None] | None = None  # the notifier's pickups

    @property
    def owner(self) -> AcmeAccount:
        assert self.account is not None, "a kid resource"
        return self.account

    @property
    def auth_block(self) -> AuthSettings:
        assert self.block is not None, "a kid resource"
        return self.block


@dataclass(frozen=True, slots=True)
class Resource:
    """A POST resource: how it is signed (``jwk``, ``kid``, or either) and its handler."""

    signed_by: str
    handler: Callable[[Call], Awaitable[Reply]]


def block_named(settings: Settings, name: str) -> AuthSettings:
    for block in settings.auth_blocks:
        if block.name == name:
            return block
    raise AcmeProblem("unauthorized", f"the auth block {name!r} this account is bound to is no longer configured")


async def check_account(call: Call) -> Call:
    """The ``kid``'s account: known, valid, the signature its key's, the client an address its
    block allows."""
    assert call.jws.kid is not None
    account_id = call.urls.account_id(call.jws.kid)
    account = await call.store.account(account_id) if account_id is not None else None
    if account is None:
        raise AcmeProblem("accountDoesNotExist", f"the kid {call.jws.kid!r} is not an account of this server")
    verify(call.jws, json.loads(account.jwk))
    if account.status != "valid":
        raise AcmeProblem("unauthorized", f"the account is {account.status}")
    block = block_named(call.runtime.settings, account.block)
    if not ip_allows(block, call.peer):
        raise AcmeProblem(
            "unauthorized", f"address {call.peer} may not use this account (auth block {block.name!r}: ip)"
        )
    return dataclasses.replace(call, account=account, block=block)


def _contacts(payload: Mapping[str, Any]) -> tuple[str, ...] | None:
    contact = payload.get("contact")
    if contact is None:
        return None
    if not isinstance(contact, list) or not all(isinstance(c, str) for c in contact):
        raise AcmeProblem("malformed", "contact must be a list of mailto: URLs")
    for value in contact:
        if not value.startswith("mailto:"):
            raise AcmeProblem("unsupportedContact", f"contact {value!r} is not a mailto: URL")
        if "@" not in value or "," in value or "?" in value or len(value) > 320:
            raise AcmeProblem("invalidContact", f"contact {value!r} is not one e-mail address")
    return tuple(contact)


def _bound_block(call: Call, payload: Mapping[str, Any], jwk: dict[str, Any]) -> tuple[AuthSettings, str | None]:
    blocks = call.runtime.settings.auth_blocks
    binding = payload.get("externalAccountBinding")
    if binding is not None:
        keys = {b.name: b.hmac_key for b in blocks if b.hmac_key is not None}
        kid = check_eab(binding, jwk, call.url, keys)
        block = block_named(call.runtime.settings, kid)
        if not ip_allows(block, call.peer):
            raise AcmeProblem("unauthorized", f"address {call.peer} may not use auth block {kid!r} (its ip list)")
        return block, kid
    for block in blocks:
        if block.hmac_key is None and ip_allows(block, call.peer):
            return block, None
    if any(b.hmac_key is not None for b in blocks):
        raise AcmeProblem(
            "externalAccountRequired",
            "an external account binding is required: key id = the auth block's name, MAC key = its hmac_key "
            "(acmems eab CONFIG BLOCK prints both)",
        )
    raise AcmeProblem("unauthorized", f"address {call.peer} may not create an account here")


async def new_account(call: Call) -> Reply:
    """newAccount (§7.3): the account of this key, or a new one bound to an auth block."""
    jwk = call.jws.jwk
    assert jwk is not None
    payload = call.jws.payload_json()
    tp = thumbprint(jwk)
    verify(call.jws, jwk)
    existing = await call.store.account_by_thumbprint(tp)
    if existing is not None:
        if existing.status != "valid":
            raise AcmeProblem("unauthorized", f"the account of this key is {existing.status}")
        return Reply(200, account_view(existing, call.urls), headers={"Location": call.urls.account(existing.id)})
    if payload.get("onlyReturnExisting") is True:
        raise AcmeProblem("accountDoesNotExist", "no account has this key")
    contact = _contacts(payload) or ()
    block, kid = _bound_block(call, payload, jwk)
    canonical = json.dumps(jwk, sort_keys=True, separators=(",", ":"))
    account = AcmeAccount(new_id(), canonical, tp, block.name, contact=contact, eab_kid=kid, created=time.time())
    stored = await call.store.add_account(account)
    if stored is account:
        log.info("new ACME account %s for auth block %r (peer %s)", account.id, block.name, call.peer)
    return Reply(
        201 if stored is account else 200,
        account_view(stored, call.urls),
        headers={"Location": call.urls.account(stored.id)},
    )


async def update_account(call: Call) -> Reply:
    """The account (§7.3.2, §7.3.6): POST-as-GET, a new contact list, or deactivation."""
    account = call.owner
    if call.ident != account.id:
        raise AcmeProblem("unauthorized", "an account may only read and change itself")
    if not call.jws.post_as_get:
        payload = call.jws.payload_json()
        status = payload.get("status")
        if status is not None and status != "deactivated":
            raise AcmeProblem("malformed", f"an account's status can only be set to deactivated, not {status!r}")
        contact = _contacts(payload)
        if contact is not None:
            account = dataclasses.replace(account, contact=contact)
        if status == "deactivated":
            account = dataclasses.replace(account, status="deactivated")
            log.info("ACME account %s deactivated (auth block %r)", account.id, account.block)
        if account != call.owner:
            await call.store.save_account(account)
    return Reply(200, account_view(account, call.urls), headers={"Location": call.urls.account(account.id)})


async def account_orders(call: Call) -> Reply:
    """The account's orders list (§7.1.2.1)."""
    if call.ident != call.owner.id:
        raise AcmeProblem("unauthorized", "an account may only list its own orders")
    ids = await call.store.orders_of(call.owner.id)
    return Reply(200, {"orders": [call.urls.of("order", i) for i in ids]})


async def key_change(call: Call) -> Reply:
    """keyChange (§7.3.5): the inner JWS, signed by the new key, names the account and its old key."""
    account = call.owner
    inner = parse_jws(call.jws.payload_json(), inner=True)
    if inner.url != call.jws.url:
        raise AcmeProblem("malformed", "the inner JWS's url differs from the outer one")
    assert inner.jwk is not None
    verify(inner, inner.jwk)
    payload = inner.payload_json()
    if payload.get("account") != call.urls.account(account.id):
        raise AcmeProblem("malformed", "the inner payload's account is not the account signing the request")
    if payload.get("oldKey") != json.loads(account.jwk):
        raise AcmeProblem("malformed", "the inner payload's oldKey is not the account's current key")
    canonical = json.dumps(inner.jwk, sort_keys=True, separators=(",", ":"))
    changed = dataclasses.replace(account, jwk=canonical, thumbprint=thumbprint(inner.jwk))
    try:
        await call.store.save_account(changed, old_thumbprint=account.thumbprint)
    except KeyInUse as exc:
        raise AcmeProblem("conflict", "another account has this key", location=call.urls.account(exc.account)) from None
    log.info("ACME account %s changed its key", account.id)
    return Reply(200, account_view(changed, call.urls), headers={"Location": call.urls.account(account.id)})
