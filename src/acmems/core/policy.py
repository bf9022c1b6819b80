"""Who may get which certificate: the seed's auth blocks (ip, hmac, all, domain globs), and the
IP-address networks (``address``) a block may certify.

Pure functions: values in, a decision (or :class:`AuthError`) out.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Sequence, Set
from dataclasses import dataclass

from acmems.core.settings import AuthSettings
from acmems.errors import AuthError

__all__ = [
    "HmacHeader",
    "address_allowed",
    "choose_auth_block",
    "domain_allowed",
    "ip_allows",
    "normalize_hash_name",
    "parse_authentication_header",
    "peer_address",
    "precheck",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_ITEM_RE = re.compile(r"([A-Za-z]+)=([^,\s]*)")


def normalize_hash_name(name: str) -> str:
    """Map the names clients send (``sha256``, ``SHA2-256`` as OpenSSL 3 prints, ``sha-256``,
    ``sha3-256``) to hashlib's (``sha256``, ``sha3_256``)."""
    lowered = name.lower()
    match = re.fullmatch(r"sha2?-?(224|256|384|512)", lowered)
    if match:
        return f"sha{match.group(1)}"
    match = re.fullmatch(r"sha2?-?512[-/_](224|256)", lowered)
    if match:
        return f"sha512_{match.group(1)}"
    match = re.fullmatch(r"sha3[-_](224|256|384|512)", lowered)
    if match:
        return f"sha3_{match.group(1)}"
    return lowered.replace("-", "_")


@dataclass(frozen=True, slots=True)
class HmacHeader:
    """A parsed ``Authentication: hmac name=<alg>, hash=<hex>`` header."""

    algorithm: str
    digest: bytes


@functools.lru_cache(maxsize=1024)
def parse_authentication_header(value: str) -> HmacHeader:
    """Parse the ``Authentication`` header.

    Accepts ``hmac name=sha256, hash=<hex>`` and the comma-less form of the seed README, hex in
    either case.

    Raises:
        AuthError: (403) the header is malformed; the message says how.
    """
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() != "hmac":
        raise AuthError("Authentication header must start with 'hmac' (hmac name=sha256, hash=<hex>)")
    items: dict[str, str] = {}
    leftover = _ITEM_RE.sub("", rest).replace(",", " ").strip()
    if leftover:
        raise AuthError(
            f"Authentication header has unreadable text {leftover[:40]!r}; write hmac name=sha256, hash=<hex>"
        )
    for key, item_value in _ITEM_RE.findall(rest):
        key = key.lower()
        if key not in ("name", "hash"):
            raise AuthError(f"Authentication header has unknown item {key!r}; use name= and hash=")
        if key in items:
            raise AuthError(f"Authentication header gives {key}= twice")
        if not item_value:
            raise AuthError(f"Authentication header has an empty {key}=")
        items[key] = item_value
    for key in ("name", "hash"):
        if key not in items:
            raise AuthError(f"Authentication header lacks {key}=; write hmac name=sha256, hash=<hex>")
    algorithm = normalize_hash_name(items["name"])
    if algorithm not in hashlib.algorithms_guaranteed or algorithm.startswith("shake"):
        raise AuthError(f"Authentication header names unknown hash {items['name']!r}")
    try:
        digest = bytes.fromhex(items["hash"])
    except ValueError:
        raise AuthError("Authentication header hash= is not hex") from None
    size = hashlib.new(algorithm).digest_size
    if len(digest) != size:
        raise AuthError(f"Authentication header hash= has {len(digest)} bytes; {algorithm} gives {size}")
    return HmacHeader(algorithm, digest)


@functools.lru_cache(maxsize=4096)
def peer_address(host: str) -> IPAddress:
    """The TCP peer as an IP address; IPv4-mapped IPv6 (``::ffff:192.0.2.1``) becomes IPv4."""
    address = ipaddress.ip_address(host.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def ip_allows(block: AuthSettings, peer: IPAddress) -> bool:
    """Whether the block's ``ip`` list lets ``peer`` in (a block without one lets everyone in)."""
    return not block.ips or any(peer in network for network in block.ips)


def address_allowed(block: AuthSettings, address: str) -> bool:
    """Whether the IP ``address`` lies in one of the block's ``address`` networks."""
    parsed = ipaddress.ip_address(address)
    return any(parsed in network for network in block.addresses)


def domain_allowed(block: AuthSettings, name: str) -> bool:
    """Whether ``name`` matches one of the block's globs (fnmatch, ``*`` matches dots too)."""
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern) for pattern in block.domains)


def precheck(blocks: Sequence[AuthSettings], peer: IPAddress, has_auth_header: bool) -> list[AuthSettings]:
    """The blocks that could still accept this client before its body is read.

    Raises:
        AuthError: (403) no block could: the client need not upload anything.
    """
    candidates = [block for block in blocks if ip_allows(block, peer) and (block.hmac_key is None or has_auth_header)]
    if not candidates:
        needs_header = any(b.hmac_key is not None and ip_allows(b, peer) for b in blocks)
        hint = "an Authentication header is required" if needs_header else f"address {peer} is not allowed"
        raise AuthError(f"not authorized: {hint}", log_detail=f"precheck: no block for peer {peer}")
    return candidates


def choose_auth_block(
    blocks: Sequence[AuthSettings],
    peer: IPAddress,
    header: str | None,
    body: bytes,
    names: Sequence[str],
    addresses: Set[str] = frozenset(),
) -> AuthSettings:
    """The first block (file order) whose every method passes and which allows every name (an IP
    address among ``names``, listed in ``addresses``, by the block's ``address`` networks; a DNS name
    by its ``domain`` globs).

    Names may not be split across blocks: one block must allow them all.

    Raises:
        AuthError: (403) with a one-line reason; the per-block reasons go to ``log_detail``.
    """
    parsed: HmacHeader | None = None
    header_error: AuthError | None = None
    if header is not None:
        try:
            parsed = parse_authentication_header(header)
        except AuthError as exc:
            header_error = exc
    reasons: list[str] = []
    checked: list[tuple[AuthSettings, str]] = []  # every block's method check, whatever its names
    for block in blocks:
        outside = [
            name
            for name in names
            if not (address_allowed(block, name) if name in addresses else domain_allowed(block, name))
        ]
        failed = _failed_method(block, peer, parsed, header_error, body)
        if not failed and not outside:
            return block
        checked.append((block, failed))
        if failed:
            reasons.append(f"{block.name}: {failed}")
        if outside:
            reasons.append(f"{block.name}: names not allowed: {', '.join(outside)}")
    detail = "; ".join(reasons) or "no auth blocks configured"
    raise AuthError(_refusal(names, peer, checked, header_error, parsed), log_detail=detail)


def _refusal(
    names: Sequence[str],
    peer: IPAddress,
    checked: Sequence[tuple[AuthSettings, str]],
    header_error: AuthError | None,
    parsed: HmacHeader | None,
) -> str:
    """The one line a refused client reads. It speaks of the client's credentials against all blocks,
    never of which block lists a name: an outsider cannot learn whether a name is configured
    somewhere it may not use."""
    if header_error is not None:
        return f"not authorized: {header_error.message}"
    usable = [block for block, failed in checked if not failed]
    failures = [failed for _, failed in checked if failed]
    if parsed is not None and any(f.startswith("hmac") for f in failures):
        if not any(block.hmac_key is not None for block in usable):
            return "not authorized: the HMAC does not match this body (or its algorithm is not the one configured)"
    wants_header = "no Authentication header" in failures
    if not usable and not wants_header:
        return f"not authorized: address {peer} may not ask for certificates"
    message = f"not authorized for {', '.join(names)}: no single auth block open to this client allows all these names"
    if wants_header:
        message += " (an Authentication header is required by the others)"
    return message


def _failed_method(
    block: AuthSettings,
    peer: IPAddress,
    parsed: HmacHeader | None,
    header_error: AuthError | None,
    body: bytes,
) -> str:
    if not ip_allows(block, peer):
        return f"address {peer} not allowed"
    if block.hmac_key is not None:
        if header_error is not None:
            return f"bad Authentication header ({header_error.message})"
        if parsed is None:
            return "no Authentication header"
        if parsed.algorithm != block.hmac_type:
            return f"hmac algorithm {parsed.algorithm} is not {block.hmac_type}"
        expected = hmac.new(block.hmac_key, body, block.hmac_type).digest()
        if not hmac.compare_digest(expected, parsed.digest):
            return "hmac does not match"
    return ""
