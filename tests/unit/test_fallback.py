"""Several CAs: named accounts, an auth block's ``ca`` list, and when the next CA is tried (pure)."""

from __future__ import annotations

import pytest

from acmems.ca.problems import falls_over
from acmems.config import settings_from_sources
from acmems.config.describe import describe_settings
from acmems.errors import AcmemsError, CaError, ConfigError, DnsUpdateError, Kind

TWO = (
    "[account]\ndir = /a\n"
    '[account "zerossl"]\nacme-server = https://acme.zerossl.com/v2/DV90\ndir = /z\n'
    '[auth "a"]\ndomain = *.example.org\nall = yes\nca = default, zerossl\n'
    '[auth "b"]\ndomain = *.example.com\nall = yes\n'
)


def test_named_accounts_and_the_ca_list() -> None:
    settings = settings_from_sources([("t.ini", TWO)])
    assert settings.auth_blocks[0].ca == ("default", "zerossl")
    assert settings.auth_blocks[1].ca == ("default",)
    assert settings.account_named("zerossl").acme_server == "https://acme.zerossl.com/v2/DV90"
    assert settings.used_accounts == ("default", "zerossl")
    text = describe_settings(settings)
    assert '[account "zerossl"]' in text and "ca = default zerossl" in text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ca = letsencrypt", 'names no [account "letsencrypt"] (defined: default, zerossl)'),
        ("ca = ", "is empty"),
        ("ca = zerossl zerossl", "names an account twice"),
    ],
)
def test_bad_ca_lists_name_the_line(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        settings_from_sources([("t.ini", TWO.replace("ca = default, zerossl", value))])


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (CaError("down", kind=Kind.CA_UNREACHABLE), True),  # unreachable, 5xx, timeouts
        (CaError("failed", kind=Kind.CA_UNREACHABLE, problem_type="serverInternal"), True),
        (CaError("wait", kind=Kind.RATE_LIMITED, problem_type="rateLimited", retry_after=3600), True),
        (CaError("wait", kind=Kind.RATE_LIMITED, problem_type="rateLimited", retry_after=30), False),  # < 60 s
        (CaError("ours", kind=Kind.RATE_LIMITED, retry_after=3600), False),  # our own limits: final
        (CaError("bad", kind=Kind.CA_REFUSED, problem_type="badCSR"), False),
        (CaError("no", kind=Kind.CA_REFUSED, problem_type="rejectedIdentifier"), False),
        (CaError("caa", kind=Kind.VALIDATION_FAILED, problem_type="caa"), False),
        (CaError("unauth", kind=Kind.VALIDATION_FAILED, problem_type="unauthorized"), False),
        (CaError("failed", kind=Kind.VALIDATION_FAILED, problem_type="connection"), False),
        (DnsUpdateError("refused", kind=Kind.DNS_REFUSED), False),
        (AcmemsError("database", kind=Kind.DATABASE_UNAVAILABLE), False),
    ],
)
def test_which_failures_fall_over_to_the_next_ca(error: AcmemsError, expected: bool) -> None:
    assert falls_over(error, request_timeout=60.0) is expected


def test_a_fallback_account_s_own_rate_limits_are_counted(tmp_path: object) -> None:
    # Only the named account has limits: the issuer still gets the log that counts them.
    from pathlib import Path

    from acmems.server import Server

    folder = Path(str(tmp_path))
    text = TWO.replace("dir = /a", f"dir = {folder / 'a'}").replace("dir = /z", f"dir = {folder / 'z'}")
    text = text.replace("acme.zerossl.com/v2/DV90\n", "acme.zerossl.com/v2/DV90\nlimit-new-orders = 10/1h\n")
    server = Server(settings_from_sources([("t.ini", text)]))
    assert server.runtime.issuer.rate_log is not None
    assert server.runtime.cas["zerossl"].settings.rate_limits is not None
