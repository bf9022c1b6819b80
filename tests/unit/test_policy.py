"""Auth blocks: ip, hmac, all, domain globs; the Authentication header."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acmems.core.policy import choose_auth_block, parse_authentication_header, peer_address, precheck
from acmems.core.settings import AuthSettings
from acmems.errors import AuthError

BODY = b"-----BEGIN CERTIFICATE REQUEST-----\n...\n"
KEY = b"A1YP67armNf3cBrecyJHdb035"
DIGEST = hmac.new(KEY, BODY, hashlib.sha256).hexdigest()
LOCAL = peer_address("127.0.0.1")
OTHER = peer_address("192.0.2.7")


def net(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(value)


MAIL = AuthSettings("mail", ips=(net("127.0.0.0/8"),), domains=("mail.example.org", "mail.example.com"))
EXT = AuthSettings("ext", ips=(net("192.0.2.0/24"),), domains=("*.test.example.org",))
SECURE = AuthSettings(
    "secure",
    ips=(net("127.0.0.1/32"),),
    hmac_type="sha256",
    hmac_key=KEY,
    domains=("mail?.example.org",),
    verification="dns",
)
OPEN = AuthSettings("open", all=True, domains=("*.open.example",))
BLOCKS = (MAIL, EXT, SECURE, OPEN)


@pytest.mark.parametrize(
    "header",
    [
        f"hmac name=sha256, hash={DIGEST}",
        f"hmac name=sha256 hash={DIGEST}",  # the seed README's comma-less form
        f"hmac name=sha2-256, hash={DIGEST}",  # what OpenSSL 3's dgst | sed gives
        f"HMAC name=SHA256, hash={DIGEST.upper()}",
        f"hmac hash={DIGEST}, name=sha-256",
        f"  hmac  name=sha256 ,  hash={DIGEST}  ",
    ],
)
def test_header_forms_accepted(header: str) -> None:
    parsed = parse_authentication_header(header)
    assert parsed.algorithm == "sha256" and parsed.digest.hex() == DIGEST
    assert choose_auth_block(BLOCKS, LOCAL, header, BODY, ["mail1.example.org"]) is SECURE


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("", "must start with 'hmac'"),
        (f"name=sha256, hash={DIGEST}", "must start with 'hmac'"),
        ("basic abc", "must start with 'hmac'"),
        ("hmac", "lacks name="),
        ("hmac name", "unreadable text"),
        ("hmac name=sha256", "lacks hash="),
        (f"hmac hash={DIGEST}", "lacks name="),
        (f"hmac name=md17, hash={DIGEST}", "unknown hash 'md17'"),
        ("hmac name=sha256, hash=abc", "not hex"),
        ("hmac name=sha256, hash=zz", "not hex"),
        ("hmac name=sha256, hash=abcd", "has 2 bytes; sha256 gives 32"),
        (f"hmac name=sha256, name=sha256, hash={DIGEST}", "gives name= twice"),
        (f"hmac name=, hash={DIGEST}", "empty name="),
        ("hmac name=sha256, hash=", "empty hash="),
        (f"hmac name=sha256, hash={DIGEST}, salt=1", "unknown item 'salt'"),
        (f"hmac name=shake_128, hash={DIGEST}", "unknown hash"),
    ],
)
def test_malformed_headers_are_403_with_a_reason(header: str, reason: str) -> None:
    with pytest.raises(AuthError, match=reason) as info:
        parse_authentication_header(header)
    assert info.value.status == 403
    with pytest.raises(AuthError, match=reason):
        choose_auth_block([SECURE], LOCAL, header, BODY, ["mail1.example.org"])


def test_first_block_in_file_order_whose_methods_and_names_all_pass_wins() -> None:
    assert choose_auth_block(BLOCKS, LOCAL, None, BODY, ["mail.example.org"]) is MAIL
    assert choose_auth_block(BLOCKS, OTHER, None, BODY, ["a.b.test.example.org"]) is EXT
    assert choose_auth_block(BLOCKS, OTHER, None, BODY, ["x.open.example"]) is OPEN


def test_domain_globs_are_case_insensitive_and_star_matches_dots() -> None:
    assert choose_auth_block(BLOCKS, OTHER, None, BODY, ["Deep.Sub.Test.Example.ORG"]) is EXT


def test_names_may_not_be_split_across_blocks() -> None:
    with pytest.raises(AuthError, match="no single auth block open to this client allows all these names"):
        choose_auth_block(BLOCKS, LOCAL, None, BODY, ["mail.example.org", "x.open.example"])


def test_wrong_ip_wrong_hmac_missing_hmac() -> None:
    with pytest.raises(AuthError, match=r"address 192\.0\.2\.7 may not ask for certificates"):
        choose_auth_block([MAIL, SECURE], OTHER, None, BODY, ["mail.example.org"])
    with pytest.raises(AuthError, match="Authentication header is required"):
        choose_auth_block([SECURE], LOCAL, None, BODY, ["mail1.example.org"])
    wrong = hmac.new(b"other", BODY, hashlib.sha256).hexdigest()
    with pytest.raises(AuthError, match="HMAC does not match") as info:
        choose_auth_block([SECURE], LOCAL, f"hmac name=sha256, hash={wrong}", BODY, ["mail1.example.org"])
    assert "secure: hmac does not match" in info.value.log_detail
    with pytest.raises(AuthError, match="HMAC does not match"):
        choose_auth_block([SECURE], LOCAL, f"hmac name=sha256, hash={DIGEST}", BODY + b"x", ["mail1.example.org"])


def test_hmac_algorithm_must_be_the_configured_one() -> None:
    digest = hmac.new(KEY, BODY, hashlib.sha512).hexdigest()
    with pytest.raises(AuthError):
        choose_auth_block([SECURE], LOCAL, f"hmac name=sha512, hash={digest}", BODY, ["mail1.example.org"])


def test_block_without_methods_accepts_everyone_as_the_original() -> None:
    anyone = AuthSettings("anyone", domains=("*.example.net",))
    assert choose_auth_block([anyone], OTHER, None, BODY, ["a.example.net"]) is anyone


def test_block_without_domains_never_matches() -> None:
    nothing = AuthSettings("nothing", all=True)
    with pytest.raises(AuthError):
        choose_auth_block([nothing], LOCAL, None, BODY, ["a.example.net"])


def test_precheck_before_the_body() -> None:
    assert precheck(BLOCKS, LOCAL, False) == [MAIL, OPEN]
    assert precheck(BLOCKS, LOCAL, True) == [MAIL, SECURE, OPEN]
    with pytest.raises(AuthError, match=r"address 192\.0\.2\.7 is not allowed"):
        precheck([MAIL, SECURE], OTHER, True)
    with pytest.raises(AuthError, match="Authentication header is required"):
        precheck([SECURE], LOCAL, False)


def test_ipv4_mapped_ipv6_peer_is_ipv4() -> None:
    assert peer_address("::ffff:127.0.0.1") == LOCAL
    assert str(peer_address("::1")) == "::1"


@given(st.text(max_size=200))
def test_arbitrary_headers_parse_or_raise_our_error(header: str) -> None:
    try:
        parse_authentication_header(header)
    except AuthError:
        pass


@given(st.text(alphabet="hmacnsheA=,0123456789abcdef -", max_size=120))
def test_header_like_text_parses_or_raises_our_error(header: str) -> None:
    try:
        parse_authentication_header("hmac " + header)
    except AuthError:
        pass


HOSTS = AuthSettings(
    "hosts",
    ips=(net("127.0.0.0/8"),),
    domains=("*.hosts.example",),
    addresses=(net("192.0.2.0/24"), net("2001:db8::/32")),
)


def test_ip_addresses_are_allowed_by_address_networks_not_by_domain_globs() -> None:
    blocks = (OPEN, HOSTS)
    assert choose_auth_block(blocks, LOCAL, None, BODY, ["192.0.2.9"], {"192.0.2.9"}) is HOSTS
    assert choose_auth_block(blocks, LOCAL, None, BODY, ["2001:db8::5"], {"2001:db8::5"}) is HOSTS
    mixed = ["web.hosts.example", "192.0.2.10"]
    assert choose_auth_block(blocks, LOCAL, None, BODY, mixed, {"192.0.2.10"}) is HOSTS
    with pytest.raises(AuthError, match="no single auth block open to this client allows all these names"):
        choose_auth_block(blocks, LOCAL, None, BODY, ["198.51.100.1"], {"198.51.100.1"})
    # a glob never lets an address through, even '*'
    everything = AuthSettings("all", all=True, domains=("*",))
    with pytest.raises(AuthError):
        choose_auth_block([everything], LOCAL, None, BODY, ["192.0.2.9"], {"192.0.2.9"})


@pytest.mark.parametrize(
    ("peer", "header"),
    [
        (OTHER, None),  # may use ext and open, not mail or secure
        (LOCAL, None),  # may use mail and open; secure wants a header
        (LOCAL, f"hmac name=sha256, hash={hmac.new(b'other', BODY, hashlib.sha256).hexdigest()}"),
    ],
)
def test_a_refusal_does_not_tell_whether_a_name_is_configured_in_a_block_the_client_may_not_use(
    peer: ipaddress.IPv4Address, header: str | None
) -> None:
    # mail.example.com is in mail's block only; nowhere.example is in none. The client gets the same
    # answer for both (bar the name it asked for): it learns nothing about blocks it cannot use.
    def refusal(name: str) -> str:
        blocks = [EXT, OPEN] if peer == OTHER else [SECURE, OPEN]
        configured = [*blocks, MAIL] if peer == OTHER else [*blocks, EXT]
        with pytest.raises(AuthError) as info:
            choose_auth_block(configured if name != "nowhere.example" else blocks, peer, header, BODY, [name])
        return info.value.message.replace(name, "NAME")

    secret = "mail.example.com" if peer == OTHER else "x.test.example.org"
    assert refusal(secret) == refusal("nowhere.example")
