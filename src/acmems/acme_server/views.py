"""The URLs and JSON objects of acmems' ACME server (RFC 8555 §7.1). Pure: records and the base
URL the client used (``https://`` and its ``Host``) in, JSON out. Every URL is built here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from acmems.core.acme_records import AcmeAccount, AcmeAuthz, AcmeOrder
from acmems.notify.events import rfc3339

__all__ = ["Reply", "Urls", "account_view", "authz_view", "order_view"]

PREFIX = "/acme"


@dataclass(frozen=True, slots=True)
class Urls:
    """Every URL of the server, under ``base`` (``https://HOST[:PORT]`` as the client sent it)."""

    base: str

    @property
    def directory(self) -> str:
        return f"{self.base}/directory"

    def of(self, resource: str, ident: str = "") -> str:
        return f"{self.base}{PREFIX}/{resource}" + (f"/{ident}" if ident else "")

    def account(self, account_id: str) -> str:
        return self.of("acct", account_id)

    def account_id(self, url: str) -> str | None:
        """The id in an account URL of this server (a ``kid``), else None."""
        prefix = self.of("acct") + "/"
        if not url.startswith(prefix):
            return None
        ident = url[len(prefix) :]
        return ident if ident and "/" not in ident else None


@dataclass(slots=True)
class Reply:
    """What a resource answers: status, body (JSON object, or bytes with ``content_type``), headers."""

    status: int
    body: Mapping[str, Any] | bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, indent=2).encode()


def account_view(account: AcmeAccount, urls: Urls) -> dict[str, Any]:
    view: dict[str, Any] = {
        "status": account.status,
        "contact": list(account.contact),
        "orders": urls.of("acct", account.id) + "/orders",
        "key": json.loads(account.jwk),
    }
    if account.created:
        view["createdAt"] = rfc3339(account.created)
    return view


def order_view(order: AcmeOrder, urls: Urls) -> dict[str, Any]:
    view: dict[str, Any] = {
        "status": order.status,
        "expires": rfc3339(order.expires),
        "identifiers": [i.as_json() for i in order.identifiers],
        "authorizations": [urls.of("authz", a) for a in order.authorizations],
        "finalize": urls.of("order", order.id) + "/finalize",
    }
    if order.profile is not None:
        view["profile"] = order.profile
    if order.replaces is not None:
        view["replaces"] = order.replaces
    if order.certificate is not None and order.status == "valid":
        view["certificate"] = urls.of("cert", order.certificate)
    if order.error is not None and order.status == "invalid":
        view["error"] = json.loads(order.error)
    return view


def authz_view(authz: AcmeAuthz, urls: Urls) -> dict[str, Any]:
    challenge: dict[str, Any] = {
        "type": authz.challenge_type,
        "url": urls.of("chall", authz.id),
        "status": authz.challenge_status,
        "token": authz.token,
    }
    if authz.validated is not None:
        challenge["validated"] = rfc3339(authz.validated)
    if authz.error is not None:
        challenge["error"] = json.loads(authz.error)
    identifier = authz.identifier
    view: dict[str, Any] = {
        "status": authz.status,
        "expires": rfc3339(authz.expires),
        "identifier": identifier.as_json(),
        "challenges": [challenge],
    }
    if authz.wildcard:
        view["wildcard"] = True
    return view
