"""Every use of certbot's ``acme`` package beyond its public API, in one place.

``acme`` (5.x) is the reference implementation and we keep it, but its public ``ClientV2`` methods
poll with fixed one-second sleeps, drop the ``Retry-After`` of error answers, retry ``badNonce``
once only and cannot send ``replaces`` (RFC 9773). Each function here says which private part it
uses and why; when the library changes, this module is what to look at.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from acme import challenges, crypto_util, messages
from acme import client as acme_client
from cryptography import x509
from josepy.json_util import field as jose_field

__all__ = [
    "BAD_NONCE_RETRIES",
    "CaNetwork",
    "answer_challenge",
    "ari_identifier",
    "fetch_authorization",
    "fetch_order",
    "new_order",
    "post_as_get",
    "resume_order",
    "retrying_bad_nonce",
]

log = logging.getLogger("acmems.acme_adapter")
T = TypeVar("T")
BAD_NONCE_RETRIES = 10


class _NewOrder(messages.NewOrder):
    """newOrder with ``replaces`` (RFC 9773 §5): the ARI identifier of the certificate this order
    renews. ``acme``'s NewOrder lacks the field."""

    replaces: str | None = jose_field("replaces", omitempty=True)


def retrying_bad_nonce(send: Callable[[], T], retries: int = BAD_NONCE_RETRIES) -> T:
    """``send()``, again with a fresh nonce each time the CA answers ``badNonce``, up to ``retries``
    more times (RFC 8555 §6.5 allows any number; the library retries once)."""
    for _ in range(retries):
        try:
            return send()
        except messages.Error as error:
            if error.code != "badNonce":
                raise
            log.debug("badNonce from the CA; retrying with a fresh nonce")
    return send()


class CaNetwork(acme_client.ClientNetwork):
    """``ClientNetwork`` that keeps the last response and retries ``badNonce`` more than once.

    Private API: ``_send_request`` (overridden to keep the response: ``messages.Error`` drops the
    ``Retry-After`` of a rateLimited answer) and ``_post_once`` (one signed POST with a new nonce,
    which :func:`retrying_bad_nonce` repeats).
    """

    last_response: requests.Response | None = None

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        response = super()._send_request(method, url, *args, **kwargs)
        self.last_response = response
        return response

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        return retrying_bad_nonce(lambda: self._post_once(*args, **kwargs))


def post_as_get(client: acme_client.ClientV2, url: str) -> requests.Response:
    """POST-as-GET (RFC 8555 §6.3). Private API: ``ClientV2._post_as_get``; the public methods that
    use it also poll or parse in ways we do not want (fixed sleeps, one answer type)."""
    return client._post_as_get(url)


def answer_challenge(
    client: acme_client.ClientV2, challb: messages.ChallengeBody, response: challenges.ChallengeResponse
) -> requests.Response:
    """Tell the CA to check the challenge (RFC 8555 §7.5.1). Private API: ``ClientV2._post``; the
    public ``answer_challenge`` insists on a ``Link: rel="up"`` that RFC 8555 does not require (Pebble
    sends none for dns-persist-01), and we do not use what it parses."""
    return client._post(challb.uri, response)


def fetch_authorization(
    client: acme_client.ClientV2, url: str, identifier: messages.Identifier | None = None
) -> messages.AuthorizationResource:
    """An authorization by POST-as-GET. Private API: ``ClientV2._authzr_from_response`` (it checks
    that the identifier did not change)."""
    return client._authzr_from_response(post_as_get(client, url), identifier, url)


def fetch_order(client: acme_client.ClientV2, url: str) -> tuple[messages.Order, requests.Response]:
    """The order at ``url`` and the raw answer (for ``Retry-After``)."""
    response = post_as_get(client, url)
    return messages.Order.from_json(response.json()), response


def resume_order(client: acme_client.ClientV2, url: str, csr_pem: bytes) -> messages.OrderResource:
    """The order at ``url`` (saved by another instance) with its authorizations, ready to go on."""
    body, _response = fetch_order(client, url)
    authorizations = [fetch_authorization(client, a) for a in body.authorizations]
    return messages.OrderResource(body=body, uri=url, authorizations=authorizations, csr_pem=csr_pem)


def new_order(
    client: acme_client.ClientV2, csr_pem: bytes, profile: str | None, replaces: str | None
) -> messages.OrderResource:
    """newOrder (RFC 8555 §7.4) with ``profile`` and ``replaces``, then its authorizations.

    Private API: ``ClientV2._post``, since ``ClientV2.new_order`` cannot send ``replaces``.
    """
    csr = x509.load_pem_x509_csr(csr_pem)
    dns_names, ip_addresses = crypto_util.get_identifiers_from_x509(csr.subject, csr.extensions)
    identifiers = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in dns_names]
    identifiers += [messages.Identifier(typ=messages.IDENTIFIER_IP, value=str(a)) for a in ip_addresses]
    order = _NewOrder(identifiers=identifiers, profile=profile, replaces=replaces)
    response = client._post(client.directory["newOrder"], order)
    body = messages.Order.from_json(response.json())
    authorizations = [fetch_authorization(client, url) for url in body.authorizations]
    return messages.OrderResource(
        body=body, uri=response.headers.get("Location"), authorizations=authorizations, csr_pem=csr_pem
    )


def ari_identifier(chain: bytes) -> str:
    """RFC 9773 §4.1 certificate identifier (base64url AKI "." serial) of the chain's leaf.

    Private API: ``acme.client._renewal_info_path_component``, the library's own encoding of it,
    so that the ``replaces`` we send matches the renewal-info URL it queries.
    """
    return acme_client._renewal_info_path_component(x509.load_pem_x509_certificate(chain))
