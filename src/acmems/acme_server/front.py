"""The front of acmems' ACME server: the directory, nonces, and every POST through the same checks
(JWS form, ``url`` equal to the request's URL, a single-use nonce, the key) to its resource."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from acmems.acme_server import orders
from acmems.acme_server.jws import parse_jws
from acmems.acme_server.problems import AcmeProblem
from acmems.acme_server.revocation import renewal_info, revoke
from acmems.acme_server.service import (
    AcmeRuntime,
    Call,
    Resource,
    account_orders,
    check_account,
    key_change,
    new_account,
    update_account,
)
from acmems.acme_server.validation import HttpValidator
from acmems.acme_server.views import Reply, Urls
from acmems.core.csr import CsrInfo
from acmems.core.policy import peer_address
from acmems.core.settings import DEFAULT_ACCOUNT, AuthSettings
from acmems.storage.acme_store import AcmeStore

__all__ = ["AcmeFront", "route"]

log = logging.getLogger("acmems.acme_server")

_ROUTE = re.compile(r"/acme/(?P<resource>[a-z-]+)(?:/(?P<ident>[A-Za-z0-9_.-]{1,200})(?P<sub>/orders|/finalize)?)?")
_FIXED = {"new-nonce", "new-account", "new-order", "revoke-cert", "key-change"}
_WITH_ID = {"acct", "order", "authz", "chall", "cert", "renewal-info"}


def route(path: str) -> tuple[str, str] | None:
    """(resource, id) of a path of this server; None for anything else. ``/directory`` is
    ``("directory", "")``; the sub-resources are ``orders`` and ``finalize``."""
    if path == "/directory":
        return "directory", ""
    match = _ROUTE.fullmatch(path)
    if match is None:
        return None
    resource, ident, sub = match.group("resource"), match.group("ident"), match.group("sub")
    if ident is None:
        return (resource, "") if resource in _FIXED else None
    if resource not in _WITH_ID:
        return None
    if sub is not None:
        wanted = {"/orders": "acct", "/finalize": "order"}[sub]
        return (sub[1:], ident) if resource == wanted else None
    return resource, ident


class AcmeFront:
    """Answers the ACME resources for the configuration in force (``current``)."""

    def __init__(
        self,
        store: AcmeStore,
        current: Callable[[], AcmeRuntime],
        http01_port: int,
        picked_up: Callable[[AuthSettings, CsrInfo, str, bytes], None] | None = None,
    ) -> None:
        self.store = store
        self.picked_up = picked_up
        self.current = current
        self.http01_port = http01_port
        self.validator = HttpValidator()
        self.resources: dict[str, Resource] = {
            "new-account": Resource("jwk", new_account),
            "new-order": Resource("kid", orders.new_order),
            "revoke-cert": Resource("either", revoke),
            "key-change": Resource("kid", key_change),
            "acct": Resource("kid", update_account),
            "orders": Resource("kid", account_orders),
            "order": Resource("kid", orders.order),
            "finalize": Resource("kid", orders.finalize),
            "authz": Resource("kid", orders.authorization),
            "chall": Resource("kid", self._challenge),
            "cert": Resource("kid", orders.certificate),
        }

    async def _challenge(self, call: Call) -> Reply:
        return await self.validator.answer(call, self.http01_port)

    def directory(self, urls: Urls) -> dict[str, Any]:
        runtime = self.current()
        blocks = runtime.settings.auth_blocks
        meta: dict[str, Any] = {"externalAccountRequired": bool(blocks) and all(b.hmac_key for b in blocks)}
        default = runtime.cas.get(DEFAULT_ACCOUNT)
        profiles = default.profiles if default is not None else None
        if profiles:
            meta["profiles"] = profiles
        return {
            "newNonce": urls.of("new-nonce"),
            "newAccount": urls.of("new-account"),
            "newOrder": urls.of("new-order"),
            "revokeCert": urls.of("revoke-cert"),
            "keyChange": urls.of("key-change"),
            "renewalInfo": urls.of("renewal-info"),
            "meta": meta,
        }

    async def nonce(self) -> str:
        return await self.store.new_nonce()

    async def renewal_info(self, cert_id: str) -> Reply:
        return await renewal_info(self.current(), self.store, cert_id)

    async def post(self, resource: str, ident: str, urls: Urls, url: str, body: bytes, peer: str) -> Reply:
        """A POST to ``resource`` (a key of ``resources``) at ``url``, from ``peer`` (the socket's)."""
        handler = self.resources.get(resource)
        if handler is None:
            raise AcmeProblem("malformed", "this resource takes no POST", status=405)
        jws = parse_jws(body)
        if jws.url != url:
            raise AcmeProblem("unauthorized", f"the JWS url {jws.url!r} is not the URL this request went to ({url})")
        assert jws.nonce is not None
        if not await self.store.use_nonce(jws.nonce):
            raise AcmeProblem("badNonce", "the nonce is unknown, used or too old; use the one in Replay-Nonce")
        if handler.signed_by == "jwk" and jws.jwk is None:
            raise AcmeProblem("malformed", "this request must be signed with a 'jwk', not a 'kid'")
        if handler.signed_by == "kid" and jws.kid is None:
            raise AcmeProblem("malformed", "this request must be signed with its account's 'kid', not a 'jwk'")
        call = Call(urls, url, ident, peer_address(peer), jws, self.current(), self.store, picked_up=self.picked_up)
        if handler.signed_by == "kid":
            call = await check_account(call)
        return await handler.handler(call)
