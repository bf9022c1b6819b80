"""revokeCert (RFC 8555 §7.6) and renewalInfo (RFC 9773) of acmems' ACME server.

A certificate acmems gave an ACME client is revoked by the account that ordered it, or by a request
signed with the certificate's own key; acmems relays it to the CA that issued it and takes it out of
its cache. The renewal window it suggests is its own renewal time for the certificate (the CA's ARI
window, or ``renew-within`` of the storage)."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from josepy.errors import DeserializationError
from josepy.jwk import JWK

from acmems.acme_server.jws import b64decode, verify
from acmems.acme_server.problems import AcmeProblem, from_error
from acmems.acme_server.service import AcmeRuntime, Call, check_account
from acmems.acme_server.views import Reply
from acmems.core.acme_records import AcmeCertificate
from acmems.core.renewal import renewal_time
from acmems.core.settings import DatabaseStorage, FileStorage
from acmems.errors import AcmemsError, CaError
from acmems.notify.events import rfc3339
from acmems.storage.acme_store import AcmeStore

__all__ = ["ARI_RETRY_AFTER", "renewal_info", "revoke"]

log = logging.getLogger("acmems.acme_server")
ARI_RETRY_AFTER = 21600  # clients ask again for the window after this (6 h, as Let's Encrypt)
_REASONS = {0, 1, 3, 4, 5, 9}  # unspecified .. cessationOfOperation, privilegeWithdrawn (RFC 5280)
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _same_key(jwk: dict[str, Any], certificate: x509.Certificate) -> bool:
    try:
        parsed = JWK.from_json(jwk)
        assert isinstance(parsed, JWK)
        key = parsed.public_key().key
    except (DeserializationError, ValueError, TypeError):
        return False
    return bool(key.public_bytes(*_SPKI) == certificate.public_key().public_bytes(*_SPKI))


async def revoke(call: Call) -> Reply:
    """revokeCert: signed by the ordering account (``kid``) or the certificate's key (``jwk``)."""
    payload = call.jws.payload_json()
    try:
        certificate = x509.load_der_x509_certificate(b64decode(payload.get("certificate"), "certificate"))
    except ValueError:
        raise AcmeProblem("malformed", "certificate is not a DER certificate") from None
    reason = payload.get("reason", 0)
    if not isinstance(reason, int) or isinstance(reason, bool) or reason not in _REASONS:
        raise AcmeProblem("badRevocationReason", f"reason {reason!r} is not one of {sorted(_REASONS)}")
    record = await call.store.certificate_by_serial(f"{certificate.serial_number:x}")
    if record is None or not _issued(record, certificate):
        raise AcmeProblem("unauthorized", "this server did not issue that certificate")
    if call.jws.kid is not None:
        call = await check_account(call)
        if call.owner.id != record.account:
            raise AcmeProblem("unauthorized", "only the account that ordered it (or its key) may revoke it")
    else:
        assert call.jws.jwk is not None
        verify(call.jws, call.jws.jwk)
        if not _same_key(call.jws.jwk, certificate):
            raise AcmeProblem("unauthorized", "the request is signed neither by its account nor the certificate's key")
    if record.revoked:
        raise AcmeProblem("alreadyRevoked", "the certificate is revoked already")
    await _relay(call.runtime, record, certificate, reason)
    await call.store.add_certificate(dataclasses.replace(record, revoked=True))
    return Reply(200, b"", content_type="text/plain")


def _issued(record: AcmeCertificate, certificate: x509.Certificate) -> bool:
    leaf = x509.load_pem_x509_certificate(record.chain.encode())
    return leaf == certificate


async def _relay(runtime: AcmeRuntime, record: AcmeCertificate, certificate: x509.Certificate, reason: int) -> None:
    """Revoke at the CA (every account some block orders from, in turn: the one that issued it
    accepts; one that finds it revoked already is as good), then drop it from the cache."""
    refused: AcmemsError | None = None
    for ca in runtime.cas.values():  # the default account's always among them
        try:
            await ca.revoke(certificate, reason)
            break
        except AcmemsError as exc:
            if isinstance(exc, CaError) and exc.problem_type == "alreadyRevoked":
                break
            refused = exc
    else:
        assert refused is not None
        raise from_error(refused)
    log.info("revoked serial %s for ACME account %s (reason %d)", record.serial, record.account, reason)
    cache = runtime.caches.get(record.storage)
    if cache is not None:
        try:
            await cache.remove_serial(certificate.serial_number)
        except (OSError, AcmemsError) as exc:
            log.warning("revoked serial %s, but it stays in storage %s: %s", record.serial, record.storage, exc)


def _window(runtime: AcmeRuntime, record: AcmeCertificate) -> tuple[datetime.datetime, datetime.datetime]:
    leaf = x509.load_pem_x509_certificate(record.chain.encode())
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if record.revoked:
        now = datetime.datetime.now(datetime.UTC)
        return now - datetime.timedelta(days=2), now - datetime.timedelta(days=1)
    start = None
    cache = runtime.caches.get(record.storage)
    if cache is not None:
        start = next((e.renew_at for e in cache.entries() if e.serial == leaf.serial_number), None)
    if start is None:
        storage = runtime.settings.storages.get(record.storage)
        days = storage.renew_within_days if isinstance(storage, FileStorage | DatabaseStorage) else 14.0
        start = renewal_time(not_before, not_after, datetime.timedelta(days=days))
    # the first quarter of what is left from then: a client renews well before the end of its certificate
    return start, start + (not_after - start) / 4


async def renewal_info(runtime: AcmeRuntime, store: AcmeStore, cert_id: str) -> Reply:
    """GET renewalInfo/<keyIdentifier>.<serial>: the window acmems renews this certificate in."""
    _, _, serial_b64 = cert_id.partition(".")
    if not serial_b64:
        raise AcmeProblem("malformed", "the certificate id is keyIdentifier.serial (base64url each)")
    serial = int.from_bytes(b64decode(serial_b64, "the serial"), "big")
    record = await store.certificate_by_serial(f"{serial:x}")
    if record is None:
        raise AcmeProblem("notFound", "this server did not issue a certificate with that serial")
    start, end = _window(runtime, record)
    body = {"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}}
    return Reply(200, body, headers={"Retry-After": str(ARI_RETRY_AFTER)})
