"""``type = dns01-lexicon`` blocks as read: the provider, its options, credentials only from files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from acmems.config import settings_from_sources
from acmems.config.describe import describe_settings
from acmems.core.settings import LexiconVerification
from acmems.errors import ConfigError

BLOCK = '[verification "api"]\ntype = dns01-lexicon\nprovider = powerdns\ndns-server = 192.0.2.53\n'


def read(text: str) -> LexiconVerification:
    verification = settings_from_sources([("t.ini", text)]).verifications["api"]
    assert isinstance(verification, LexiconVerification)
    return verification


def test_options_are_the_providers_and_secrets_come_from_files(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    verification = read(BLOCK + f"pdns-server = http://192.0.2.53:8081\nauth-token-file = {token}\nttl = 30\n")
    assert verification.provider == "powerdns"
    assert verification.options == {"pdns_server": "http://192.0.2.53:8081", "auth_token": "s3cret-token"}
    assert verification.lookup.ttl == 30 and verification.lookup.dns_servers == (("192.0.2.53", 53),)
    described = describe_settings(settings_from_sources([("t.ini", BLOCK + f"auth-token-file = {token}\n")]))
    assert "auth_token = ***" in described and "s3cret-token" not in described
    assert "s3cret-token" not in repr(verification)


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ("auth-token = inline\n", "give 'auth-token-file = PATH'"),
        ("api-key = inline\n", "give 'api-key-file = PATH'"),
        ("auth-token-file = /nonexistent/token\n", "cannot read /nonexistent/token"),
        ("pdns-server = a\npdns_server = b\n", "provider option 'pdns_server' is given twice"),
    ],
)
def test_bad_options_name_the_line(extra: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        read(BLOCK + extra)
    assert says in raised.value.message and "t.ini:" in raised.value.message
    assert "inline" not in raised.value.message


def test_unknown_provider_and_missing_keys() -> None:
    with pytest.raises(ConfigError, match="dns-lexicon has no provider 'nosuch'"):
        read(BLOCK.replace("powerdns", "nosuch"))
    with pytest.raises(ConfigError, match="needs 'provider'"):
        read('[verification "api"]\ntype = dns01-lexicon\ndns-server = 192.0.2.53\n')
    with pytest.raises(ConfigError, match="needs 'dns-server'"):
        read('[verification "api"]\ntype = dns01-lexicon\nprovider = powerdns\n')


def test_without_the_extra_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lexicon._private.discovery", None)  # as if not installed
    with pytest.raises(
        ConfigError, match=r"needs dns-lexicon, which is not installed: pip install 'acmems\[lexicon\]'"
    ):
        read(BLOCK)
