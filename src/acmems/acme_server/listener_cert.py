"""The TLS of the ``[acme-server]`` listener: the configured certificate and key, or, with
``name =``, a certificate acmems orders for itself like any other (through the same issuer, from
the section's ``ca`` with its ``verification``) and renews in place."""

from __future__ import annotations

import asyncio
import datetime
import logging
import ssl
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmems.acme_server.service import AcmeRuntime
from acmems.core.csr import parse_csr
from acmems.core.renewal import renewal_time
from acmems.core.settings import AcmeServerSettings, AuthSettings
from acmems.errors import AcmemsError, ConfigError
from acmems.fileio import write_atomic

__all__ = ["OwnCertificate", "tls_context"]

log = logging.getLogger("acmems.acme_server")
_RENEW_WITHIN = datetime.timedelta(days=14)
_CHECK_EVERY = 3600.0
_RETRY_AFTER_FAILURE = 300.0


def tls_context(certificate: Path, key: Path) -> ssl.SSLContext:
    """The listener's TLS (1.2 and later); ``load_cert_chain`` on it again swaps the certificate
    for new connections.

    Raises:
        ConfigError: the files cannot be read as a certificate chain and its key.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certificate, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot use {certificate} and {key} for the listener: {exc}", section="acme-server"
        ) from None
    return context


class OwnCertificate:
    """The listener certificate for ``[acme-server] name``: key and chain in ``dir``
    (``listener-key.pem`` 0600, ``listener.pem``)."""

    def __init__(self, settings: AcmeServerSettings) -> None:
        assert settings.dir is not None and settings.names
        self.settings = settings
        self.key_path = settings.dir / "listener-key.pem"
        self.chain_path = settings.dir / "listener.pem"
        self.context: ssl.SSLContext | None = None

    def _key_pem(self) -> bytes:
        if not self.key_path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            try:
                write_atomic(self.key_path, pem, 0o600, exclusive=True)
            except FileExistsError:
                pass  # another acmems on this dir wrote it first: use that one
        return self.key_path.read_bytes()

    def _csr_pem(self) -> bytes:
        key = serialization.load_pem_private_key(self._key_pem(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        names = self.settings.names
        return (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )

    def renew_at(self) -> datetime.datetime | None:
        """When the chain in ``dir`` is due (None: there is none, or it is not for these names)."""
        try:
            leaf = x509.load_pem_x509_certificate(self.chain_path.read_bytes())
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (OSError, ValueError, x509.ExtensionNotFound):
            return None
        if sorted(san.get_values_for_type(x509.DNSName)) != sorted(self.settings.names):
            return None
        return renewal_time(leaf.not_valid_before_utc, leaf.not_valid_after_utc, _RENEW_WITHIN)

    def _still_valid(self) -> bool:
        try:
            leaf = x509.load_pem_x509_certificate(self.chain_path.read_bytes())
        except (OSError, ValueError):
            return False
        return leaf.not_valid_after_utc > datetime.datetime.now(datetime.UTC)

    def _block(self, runtime: AcmeRuntime) -> AuthSettings:
        settings = runtime.settings
        default = settings.default_storage
        storage = default if default is not None and default in runtime.caches else next(iter(runtime.caches))
        assert self.settings.verification is not None
        return AuthSettings(
            "acme-server",
            domains=self.settings.names,
            verification=self.settings.verification,
            storage=storage,
            ca=self.settings.ca,
        )

    async def obtain(self, runtime: AcmeRuntime) -> ssl.SSLContext:
        """A chain that is not due (ordered now if needed) loaded into the listener's context."""
        due = self.renew_at()
        if due is None or due <= datetime.datetime.now(datetime.UTC):
            csr = parse_csr(await asyncio.to_thread(self._csr_pem))
            timeout = runtime.settings.mgmt.request_timeout
            try:
                result = await runtime.issuer.sign(csr, self._block(runtime), timeout)
            except AcmemsError as exc:
                if due is None or not self._still_valid():
                    raise
                # due, but still valid: serve it; keep_renewed tries again
                log.warning(
                    "cannot renew the ACME listener's certificate yet (%s); serving the current one", exc.message
                )
            else:
                await asyncio.to_thread(write_atomic, self.chain_path, result.chain, 0o644)
                names = ", ".join(self.settings.names)
                log.info("the ACME listener's certificate for %s is in %s", names, self.chain_path)
        if self.context is None:
            self.context = tls_context(self.chain_path, self.key_path)
        else:
            self.context.load_cert_chain(self.chain_path, self.key_path)
        return self.context

    async def keep_renewed(self, current: Callable[[], AcmeRuntime]) -> None:
        """Renew the listener's certificate when due, for as long as acmems runs (a failure is tried
        again every 5 minutes, while the current certificate is served)."""
        while True:
            due = self.renew_at()
            wait = _CHECK_EVERY if due is None else (due - datetime.datetime.now(datetime.UTC)).total_seconds()
            await asyncio.sleep(min(max(wait, 0.0), _CHECK_EVERY))
            try:
                await self.obtain(current())
            except (AcmemsError, OSError, ssl.SSLError) as exc:
                message = exc.message if isinstance(exc, AcmemsError) else str(exc)
                log.error("cannot renew the ACME listener's certificate: %s; trying again in 5 minutes", message)
            due = self.renew_at()
            if due is None or due <= datetime.datetime.now(datetime.UTC):
                await asyncio.sleep(_RETRY_AFTER_FAILURE)
