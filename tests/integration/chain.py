"""Checks of what acmems answered: a chain that verifies against Pebble's root, for the asked names."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from cryptography import x509

from tests.realservices import Pebble


def split_pem(chain: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(chain)


def leaf_names(chain: bytes) -> set[str]:
    leaf = split_pem(chain)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {name.lower() for name in san.get_values_for_type(x509.DNSName)}


def assert_valid_chain(chain: bytes, pebble: Pebble, names: list[str]) -> None:
    """The leaf verifies with openssl against Pebble's root through the returned intermediate and
    names exactly ``names``; the blocks are separated by a blank line."""
    certs = split_pem(chain)
    assert len(certs) >= 2, chain
    assert b"-----END CERTIFICATE-----\n\n-----BEGIN CERTIFICATE-----" in chain
    assert leaf_names(chain) == {n.lower() for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        root, leaf, untrusted = Path(tmp, "root.pem"), Path(tmp, "leaf.pem"), Path(tmp, "chain.pem")
        root.write_bytes(pebble.get("/roots/0"))
        blocks = chain.split(b"\n\n")
        leaf.write_bytes(blocks[0])
        untrusted.write_bytes(b"\n".join(blocks[1:]))
        result = subprocess.run(
            ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(untrusted), str(leaf)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
