"""Parsers of single configuration values: each returns the value or raises ``ValueError`` whose
text says what would be valid (the reader adds file, line, section and key)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from pathlib import Path

from acmems.core.policy import normalize_hash_name
from acmems.core.settings import Listener

__all__ = [
    "LOG_LEVELS",
    "MAX_WORKERS",
    "TSIG_ALGORITHMS",
    "base64_secret",
    "database_conninfo",
    "dns_server",
    "domain_glob",
    "eab_hmac_key",
    "email_address",
    "hash_name",
    "instance_name",
    "ip_network",
    "log_level",
    "non_negative_number",
    "nonempty",
    "parse_bool",
    "parse_listener",
    "parse_size",
    "positive_int",
    "positive_number",
    "profile_name",
    "read_secret_file",
    "read_tsig_key_file",
    "tsig_algorithm",
    "worker_count",
    "zone_name",
]

TSIG_ALGORITHMS = (
    "hmac-sha256",
    "hmac-sha384",
    "hmac-sha512",
    "hmac-sha224",
    "hmac-sha1",
    "hmac-md5",
)


# ----------------------------------------------------------------------------------- value parsers


def parse_listener(value: str) -> Listener:
    """Parse ``host:port`` (IPv6 hosts in brackets) into a :class:`Listener`.

    Raises:
        ValueError: with a message saying what a valid listener looks like.
    """
    value = value.strip()
    match = re.fullmatch(r"\[([0-9A-Fa-f:.%\w]+)\]:(\d+)|([^:\[\]\s]+):(\d+)", value)
    if match is None:
        raise ValueError(f"{value!r} is not host:port; write e.g. 127.0.0.1:1313 or [::1]:1313 (IPv6 in brackets)")
    host = match.group(1) or match.group(3)
    port = port_number(match.group(2) or match.group(4))
    if match.group(1) is not None:
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
    return Listener(host, port)


def parse_size(value: str) -> int:
    """Parse a size in bytes with an optional ``k``/``m`` suffix (1024-based).

    Raises:
        ValueError: for anything else.
    """
    match = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)\s*", value)
    if match is None:
        raise ValueError(f"{value!r} is not a size; write bytes, or a number with k or m (4k)")
    factor = {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]
    size = int(match.group(1)) * factor
    if size <= 0:
        raise ValueError("the size must be larger than 0")
    return size


def parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("yes", "true", "on", "1"):
        return True
    if lowered in ("no", "false", "off", "0"):
        return False
    raise ValueError(f"{value!r} is not yes or no")


def positive_number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if not number > 0 or number != number or number == float("inf"):
        raise ValueError(f"{value!r} must be a number larger than 0")
    return number


def positive_int(value: str) -> int:
    if not re.fullmatch(r"\d+", value) or int(value) <= 0:
        raise ValueError(f"{value!r} must be a whole number larger than 0")
    return int(value)


def port_number(value: str) -> int:
    """A TCP port, 1-65535."""
    if not re.fullmatch(r"\d+", value):
        raise ValueError(f"{value!r} is not a port number (1-65535)")
    port = int(value)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range 1-65535")
    return port


def ip_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address or network; write e.g. 192.0.2.1, 192.0.2.0/24 or 2001:db8::/32"
        ) from None


def hash_name(value: str) -> str:
    name = normalize_hash_name(value)
    if name not in hashlib.algorithms_guaranteed:
        valid = ", ".join(sorted(a for a in hashlib.algorithms_guaranteed if not a.startswith("shake")))
        raise ValueError(f"{value!r} is not a hash this server knows; use one of {valid}")
    if name.startswith("shake"):
        raise ValueError(f"{value!r} has no fixed length and cannot be used for HMAC")
    return name


def base64_secret(value: str) -> str:
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the secret is not valid base64 (as tsig-keygen writes it)") from None
    if not decoded:
        raise ValueError("the secret is empty")
    return value


_TSIG_FILE_RE = re.compile(r'key\s+"?([^"\s{]+)"?\s*\{(?P<body>[^}]*)\}\s*;', re.IGNORECASE | re.DOTALL)


def read_tsig_key_file(path: Path) -> tuple[str, str, str]:
    """Read a BIND key file (as written by ``tsig-keygen``).

    Returns:
        ``(key name, algorithm, base64 secret)`` of its first key.

    Raises:
        ValueError: the file cannot be read or holds no complete key.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    match = _TSIG_FILE_RE.search(text)
    if match is None:
        raise ValueError(f'{path} holds no key "name" {{ algorithm ...; secret "..."; }};')
    body = match.group("body")
    algorithm = re.search(r"algorithm\s+\"?([\w-]+)\"?\s*;", body)
    secret = re.search(r'secret\s+"([^"]+)"\s*;', body)
    if algorithm is None or secret is None:
        raise ValueError(f"{path}: key {match.group(1)!r} lacks its algorithm or secret")
    return match.group(1), algorithm.group(1).lower(), base64_secret(secret.group(1))


MAX_WORKERS = 64
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def log_level(value: str) -> str:
    if value.lower() not in LOG_LEVELS:
        raise ValueError(f"{value!r} is not a level; use one of {', '.join(LOG_LEVELS)}")
    return value.lower()


def nonempty(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


def email_address(value: str) -> str:
    value = value.removeprefix("mailto:")
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


def eab_hmac_key(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_\-+/]+=*", value):
        raise ValueError("is not base64url, as the CA gives the EAB HMAC key")
    padded = value + "=" * (-len(value) % 4)
    try:
        decoded = base64.urlsafe_b64decode(padded.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ValueError("is not base64url, as the CA gives the EAB HMAC key") from None
    if not decoded:
        raise ValueError("is empty")
    return value


def dns_server(value: str) -> tuple[str, int]:
    value = value.strip()
    if re.fullmatch(r"[0-9A-Fa-f:]+", value) and value.count(":") > 1:
        ipaddress.IPv6Address(value)
        return value, 53
    if ":" in value:
        listener = parse_listener(value)
        return listener.host, listener.port
    if not value:
        raise ValueError("must name the DNS server that takes updates (host or host:port)")
    return value, 53


def tsig_algorithm(value: str) -> str:
    value = value.lower()
    if value not in TSIG_ALGORITHMS:
        raise ValueError(f"{value!r} is not a TSIG algorithm; use one of {', '.join(TSIG_ALGORITHMS)}")
    return value


def zone_name(value: str) -> str:
    value = value.strip().rstrip(".").lower()
    if not re.fullmatch(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*", value):
        raise ValueError(f"{value!r} is not a DNS zone name")
    return value


def profile_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
        raise ValueError(f"{value!r} is not a profile name (as the CA's directory lists them)")
    return value


def worker_count(value: str) -> int:
    count = positive_int(value)
    if count > MAX_WORKERS:
        raise ValueError(f"{value!r} is too many; use 1 to {MAX_WORKERS} (about one per CPU core)")
    return count


def non_negative_number(value: str) -> float:
    if value.strip() in ("0", "0.0"):
        return 0.0
    return positive_number(value)


def domain_glob(value: str) -> str:
    value = value.strip().lower().rstrip(".")
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not a domain glob; write e.g. mail.example.org or *.example.org")
    return value


def database_conninfo(value: str) -> str:
    """A libpq connection string: ``postgresql://`` URI or ``key=value`` pairs (checked by libpq's rules)."""
    import psycopg
    from psycopg import conninfo

    try:
        parts = conninfo.conninfo_to_dict(value)
    except psycopg.Error:  # psycopg's text may quote the value, and with it a password
        raise ValueError(
            "is not a libpq connection string: use postgresql://user@host/dbname?sslmode=verify-full "
            "or host=... dbname=... user=..."
        ) from None
    if not parts:
        raise ValueError("is empty; name the database: postgresql://user@host/dbname")
    return value


def read_secret_file(path: Path) -> str:
    """The text of a secret file less trailing whitespace; a missing or empty file is an error naming it."""
    try:
        text = path.read_text(encoding="utf-8").rstrip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ValueError(f"cannot read {path}: {reason}") from None
    if not text:
        raise ValueError(f"{path} is empty")
    return text


_INSTANCE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def instance_name(value: str) -> str:
    if not _INSTANCE_NAME_RE.match(value):
        raise ValueError(f"{value!r} is not a name: letters, digits, '.', '_' and '-', at most 63")
    return value
