"""The ACME account on disk: ``account.pem`` (private key, 0600) and ``registration.json``."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from acme import messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.errors import DeserializationError
from josepy.jwa import ES256, ES384, ES512, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA

from acmems.errors import ConfigError
from acmems.fileio import temp_writer_gone, write_atomic

__all__ = ["AccountFiles", "generate_key", "jwk_and_alg"]

KEY_FILE = "account.pem"
REGISTRATION_FILE = "registration.json"


def generate_key(key_type: str = "rsa", size: int = 4096) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """A new account key: RSA of ``size`` bits, or EC P-256 (``size`` 256) / P-384 (384)."""
    if key_type == "ec":
        curve: ec.EllipticCurve = ec.SECP384R1() if size == 384 else ec.SECP256R1()
        return ec.generate_private_key(curve)
    return rsa.generate_private_key(public_exponent=65537, key_size=size)


def jwk_and_alg(key: object) -> tuple[JWK, JWASignature]:
    """The JWK for an account key and the JWS algorithm that goes with it (RFC 7518 §3.1)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return JWKRSA(key=key), RS256
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = {"secp256r1": ES256, "secp384r1": ES384, "secp521r1": ES512}.get(key.curve.name)
        if alg is not None:
            return JWKEC(key=key), alg
    raise ValueError(f"unsupported account key type {type(key).__name__}")


@dataclass(frozen=True, slots=True)
class AccountFiles:
    """Paths of the account's files in ``[account] dir``."""

    directory: Path

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def registration_path(self) -> Path:
        return self.directory / REGISTRATION_FILE

    def remove_stale_temp_files(self) -> None:
        """Remove temporary files of writes a killed process did not finish: those whose writer is
        gone, and any older than a minute (a younger one of a live process may be a write in
        progress, e.g. another acmems starting on this folder)."""
        if self.directory.is_dir():
            stale = time.time() - 60
            for temp in self.directory.glob(".*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    if temp_writer_gone(temp) or temp.stat().st_mtime < stale:
                        temp.unlink()

    def has_key(self) -> bool:
        return self.key_path.exists()

    def load_key(self) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
        """Read the private key.

        Raises:
            ConfigError: missing, unreadable or not a supported key, saying how to fix it.
        """
        try:
            with self.key_path.open("rb") as file:
                mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
                data = file.read()
        except FileNotFoundError:
            raise ConfigError(
                f"no account key at {self.key_path}; run 'acme-register --gen-key --register CONFIG' "
                "or set accept-terms-of-service so acmems registers at start"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read the account key {self.key_path}: {exc.strerror}") from None
        if mode & 0o077:
            raise ConfigError(
                f"the account key {self.key_path} may be read or changed by other users (mode {mode:04o}); "
                f"run 'chmod 600 {self.key_path}'"
            )
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ConfigError(f"{self.key_path} is not an unencrypted PEM private key") from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{self.key_path} holds a {type(key).__name__}; use RSA or EC")
        return key

    def save_key(self, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, *, replace: bool = False) -> None:
        """Write the key as PKCS#8 PEM, mode 0600, atomically; without ``replace``, only where none
        exists (:class:`FileExistsError`: another process saved one first)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_atomic(self.key_path, pem, mode=0o600, exclusive=not replace)

    def back_up(self) -> list[Path]:
        """Move the key and its registration aside (``*.bak-<UTC time>``) before a new key replaces them.

        The registration belongs to the old key, so it goes too; the backups keep the old account
        usable by hand.
        """
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        moved = []
        for path in (self.key_path, self.registration_path):
            if path.exists():
                backup = path.with_name(f"{path.name}.bak-{stamp}")
                os.replace(path, backup)
                moved.append(backup)
        return moved

    def load_registration(self) -> messages.RegistrationResource | None:
        """The saved registration, or None if there is none (or it cannot be read)."""
        try:
            text = self.registration_path.read_text()
        except FileNotFoundError:
            return None
        try:
            regr: messages.RegistrationResource = messages.RegistrationResource.json_loads(text)
            return regr
        except (DeserializationError, ValueError) as exc:
            raise ConfigError(
                f"{self.registration_path} is not a registration saved by acmems ({exc}); remove it and register again"
            ) from None

    def save_registration(self, regr: messages.RegistrationResource) -> None:
        """Write the registration resource as JSON, atomically (0600: it names our account)."""
        text = json.dumps(regr.to_json(), indent=2, sort_keys=True) + "\n"
        write_atomic(self.registration_path, text.encode(), mode=0o600)
