"""``[verification "name"]`` blocks: ``http01``, ``dns01-dnsUpdate`` (RFC 2136), ``dns01-lexicon``
(a provider's API through dns-lexicon) and ``dns01-persist`` (dns-persist-01)."""

from __future__ import annotations

import re
from pathlib import Path

from acmems.config.ini import Section
from acmems.config.sections import DEFAULT_HTTP01_LISTENERS, Keys, first_key_type
from acmems.config.values import (
    base64_secret,
    dns_server,
    nonempty,
    parse_bool,
    parse_listener,
    positive_int,
    positive_number,
    read_secret_file,
    read_tsig_key_file,
    tsig_algorithm,
    zone_name,
)
from acmems.core.settings import (
    DnsPersistVerification,
    DnsUpdateVerification,
    Http01Verification,
    LexiconVerification,
    VerificationSettings,
)

__all__ = ["VERIFICATION_TYPES", "read_verification"]

VERIFICATION_TYPES = ("http01", "dns01-dnsUpdate", "dns01-lexicon", "dns01-persist")
# The keys of a dns01-lexicon block that are acmems' own; every other key is the provider's.
_LOOKUP_KEYS = ("dns-server", "check-server", "ttl", "timeout", "propagation-timeout", "zone", "follow-cname")
# Provider options that hold credentials: only as <option>-file, so they are never in the INI file.
_SECRET_WORDS = re.compile(r"token|secret|password|passwd|key|credential|auth")


def lexicon_providers() -> list[str]:
    """The provider names lexicon knows; raises ImportError when dns-lexicon is not installed."""
    from lexicon._private.discovery import find_providers

    return sorted(find_providers())


def read_verification(section: Section, keys: Keys) -> VerificationSettings:
    assert section.name is not None
    vtype = first_key_type(section, VERIFICATION_TYPES)
    keys.one("type")
    if vtype == "http01":
        listeners = keys.values("listener", parse_listener)
        return Http01Verification(section.name, tuple(listeners) or DEFAULT_HTTP01_LISTENERS)
    if vtype == "dns01-persist":
        # A dns-server is optional here: where to check the record, and where --publish adds it.
        update = _read_dns_update(section.name, keys) if keys.all("dns-server") else None
        return DnsPersistVerification(section.name, update)
    if vtype == "dns01-lexicon":
        return _read_lexicon(section, keys)
    return _read_dns_update(section.name, keys)


def _read_dns_update(name: str, keys: Keys, *, signed: bool = True) -> DnsUpdateVerification:
    servers = keys.values("dns-server", dns_server) or [("127.0.0.1", 53)]
    host, port = servers[0]
    key_name = secret = None
    algorithm = "hmac-sha256"
    if signed:
        key_file = keys.value("tsig-key-file", Path, None)
        key_name = keys.value("tsig-key-name", nonempty, None)
        secret = keys.value("tsig-key-secret", base64_secret, None)
        algorithm = keys.value("tsig-algorithm", tsig_algorithm, "hmac-sha256")
        if key_file is not None:
            entry = keys.one("tsig-key-file")
            assert entry is not None
            if key_name is not None or secret is not None:
                raise keys._error(entry, "give either tsig-key-file or tsig-key-name + tsig-key-secret")
            key_name, file_algorithm, secret = keys.convert(entry, lambda v: read_tsig_key_file(Path(v)))
            algorithm = keys.convert(entry, lambda v: tsig_algorithm(file_algorithm))
        else:
            keys.together("tsig-key-name", "tsig-key-secret", (key_name, secret))
    return DnsUpdateVerification(
        name=name,
        dns_server=host,
        dns_port=port,
        ttl=keys.value("ttl", positive_int, 60),
        timeout=keys.value("timeout", positive_number, 5.0),
        tsig_key_name=key_name,
        tsig_key_secret=secret,
        tsig_algorithm=algorithm,
        zone=keys.value("zone", zone_name, None),
        propagation_timeout=keys.value("propagation-timeout", positive_number, 60.0),
        check_servers=tuple(keys.values("check-server", dns_server)),
        more_dns_servers=tuple(servers[1:]),
        follow_cname=keys.value("follow-cname", parse_bool, True),
    )


def _read_lexicon(section: Section, keys: Keys) -> LexiconVerification:
    assert section.name is not None
    entry = keys.one("provider")
    if entry is None:
        raise section.error("type = dns01-lexicon needs 'provider', the dns-lexicon provider name (e.g. powerdns)")
    try:
        known = lexicon_providers()
    except ImportError:
        raise keys._error(
            entry, "type = dns01-lexicon needs dns-lexicon, which is not installed: pip install 'acmems[lexicon]'"
        ) from None
    provider = entry.value.strip().lower()
    if provider not in known:
        raise keys._error(entry, f"dns-lexicon has no provider {provider!r} (it has {len(known)}: {', '.join(known)})")
    if not keys.all("dns-server"):
        raise section.error(
            "type = dns01-lexicon needs 'dns-server': a DNS server that answers for the zones (acmems finds the "
            "zone, follows CNAMEs and waits until the value is served there)"
        )
    lookup = _read_dns_update(section.name, keys, signed=False)
    options: dict[str, str] = {}
    secrets: list[str] = []
    for option in section.entries:
        if option.key in ("type", "provider", *_LOOKUP_KEYS):
            continue
        keys.all(option.key)  # the provider's: not reported as unknown
        if option.key.endswith("-file"):
            name = option.key.removesuffix("-file").replace("-", "_")
            value = keys.convert(option, lambda v: read_secret_file(Path(nonempty(v))))
            secrets.append(value)
        elif _SECRET_WORDS.search(option.key):
            raise keys._error(
                option,
                f"a credential is read from a file: give '{option.key}-file = PATH' (0600) instead, so that the "
                "configuration holds no secret",
            )
        else:
            name, value = option.key.replace("-", "_"), option.value
        if name in options:
            raise keys._error(option, f"provider option {name!r} is given twice")
        options[name] = value
    return LexiconVerification(section.name, provider, options, tuple(secrets), lookup)
