"""The configuration reader: every key, its default, each error message with file:line."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acmems.config import load_settings, settings_from_sources
from acmems.config.values import parse_listener, parse_size
from acmems.core.settings import (
    LETSENCRYPT_STAGING,
    DnsUpdateVerification,
    FileStorage,
    Http01Verification,
    Listener,
    NoneStorage,
    Settings,
)
from acmems.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def load(text: str, name: str = "test.ini") -> Settings:
    return settings_from_sources([(name, text)])


def error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(text)
    return info.value.message


# ----------------------------------------------------------------------------------- the seed


def test_the_seed_example_configuration_loads() -> None:
    settings = load_settings([ROOT / "configs" / "example.ini"])
    assert settings.account.acme_server == LETSENCRYPT_STAGING
    assert settings.account.dir == Path("/etc/acmems/account")
    assert settings.mgmt.listeners == (Listener("192.0.2.13", 1313), Listener("2001:db8::13", 1313))
    assert settings.mgmt.max_size == 4096
    assert settings.default_verification == "http"
    assert settings.default_storage == "file"
    dns = settings.verifications["dns"]
    assert isinstance(dns, DnsUpdateVerification)
    assert (dns.dns_server, dns.dns_port, dns.ttl, dns.timeout) == ("192.0.2.53", 53, 5, 30.0)
    assert settings.storages["file"] == FileStorage("file", Path("/etc/acmems/storage"), 14.0)
    assert [b.name for b in settings.auth_blocks] == ["mail", "ext", "mail-secure"]
    mail, ext, secure = settings.auth_blocks
    assert mail.ips == (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("198.51.100.21/32"))
    assert mail.domains == ("mail.example.org", "mail.example.com")
    assert (mail.verification, mail.storage) == ("http", "file")
    assert ext.domains == ("*.test.example.org",)
    assert secure.hmac_type == "sha256" and secure.hmac_key == b"A1YP67armNf3cBrecyJHdb035"
    assert (secure.verification, secure.storage) == ("dns", "file")
    assert settings.warnings == ()


# ------------------------------------------------------------------------------------ defaults


def test_defaults_of_an_almost_empty_file() -> None:
    settings = load("[account]\ndir = /x\n")
    assert settings.account.acme_server == LETSENCRYPT_STAGING
    assert settings.mgmt.listeners == (Listener("127.0.0.1", 1313), Listener("::1", 1313))
    assert settings.mgmt.max_size == 4096
    assert settings.mgmt.request_timeout == 60
    implicit = settings.verifications["http"]
    assert isinstance(implicit, Http01Verification) and implicit.implicit
    assert implicit.listeners == (Listener("0.0.0.0", 1380), Listener("::", 1380))
    assert settings.storages["none"] == NoneStorage("none", implicit=True)
    assert settings.default_verification == "http" and settings.default_storage == "none"
    assert settings.logging.level == "info" and settings.logging.destination == "stderr"


def test_a_single_block_becomes_the_default() -> None:
    settings = load(
        '[verification "v"]\ntype = http01\n[storage "s"]\ntype = file\ndirectory = /c\n'
        '[auth "a"]\nall = yes\ndomain = x.example\n'
    )
    assert settings.default_verification == "v" and settings.default_storage == "s"
    assert settings.auth_blocks[0].verification == "v" and settings.auth_blocks[0].storage == "s"
    assert "http" not in settings.verifications


def test_default_storage_is_honoured_with_several_storages() -> None:
    # The original ended up with storage none here.
    settings = load(
        "[mgmt]\ndefault-storage = b\n"
        '[storage "a"]\ntype = none\n[storage "b"]\ntype = file\ndirectory = /c\n'
        '[auth "x"]\nall = yes\ndomain = *\n'
    )
    assert settings.default_storage == "b" and settings.auth_blocks[0].storage == "b"


def test_several_storages_without_default_use_an_implicit_none() -> None:
    settings = load('[storage "a"]\ntype = file\ndirectory = /a\n[storage "b"]\ntype = file\ndirectory = /b\n')
    assert settings.default_storage == "none"
    assert isinstance(settings.storages["none"], NoneStorage)


def test_the_implicit_block_never_replaces_a_users_block_of_the_same_name() -> None:
    settings = load(
        '[verification "http"]\ntype = http01\nlistener = 127.0.0.1:8080\n'
        '[verification "dns"]\ntype = dns01-dnsUpdate\n'
    )
    http = settings.verifications["http"]
    assert isinstance(http, Http01Verification) and not http.implicit
    assert http.listeners == (Listener("127.0.0.1", 8080),)


def test_empty_default_disables_it() -> None:
    message = error(
        '[mgmt]\ndefault-verification =\n[verification "v"]\ntype = http01\n[auth "a"]\nall = yes\ndomain = x\n'
    )
    assert "test.ini:5" in message and '[auth "a"] verification' in message
    assert "default-verification is disabled" in message


def test_only_verifications_some_auth_block_uses_open_listeners() -> None:
    settings = load(
        '[verification "a"]\ntype = http01\n[verification "b"]\ntype = http01\nlistener = 127.0.0.1:9\n'
        "[mgmt]\ndefault-verification = a\n"
        '[auth "x"]\nall = yes\ndomain = *\n'
    )
    assert settings.used_verifications == ("a",)


# ------------------------------------------------------------------------------------ each key


def test_account_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACME_CAFILE", raising=False)
    settings = load(
        "[account]\nacme-server = https://ca.example/dir\ndir = /acct\naccept-terms-of-service = yes\n"
        "accept-terms-of-service = https://ca.example/tos\nca-bundle = /ca.pem\nemail = a@example.org\n"
        "email = mailto:b@example.org\neab-kid = kid-1\neab-hmac-key = c2VjcmV0LWtleQ\n"
    )
    account = settings.account
    assert account.acme_server == "https://ca.example/dir"
    assert account.accept_terms_of_service == ("yes", "https://ca.example/tos")
    assert account.accepts_terms("https://other/tos")
    assert account.ca_bundle == Path("/ca.pem")
    assert account.emails == ("a@example.org", "b@example.org")
    assert (account.eab_kid, account.eab_hmac_key) == ("kid-1", "c2VjcmV0LWtleQ")


def test_terms_accepted_only_for_the_named_url() -> None:
    account = load("[account]\naccept-terms-of-service = https://ca.example/tos-v2\n").account
    assert account.accepts_terms("https://ca.example/tos-v2")
    assert not account.accepts_terms("https://ca.example/tos-v3")
    assert not load("[account]\naccept-terms-of-service = no\n").account.accepts_terms("x")


def test_acme_cafile_environment_is_the_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_CAFILE", "/env/ca.pem")
    assert load("[account]\n").account.ca_bundle == Path("/env/ca.pem")
    assert load("[account]\nca-bundle = /cfg.pem\n").account.ca_bundle == Path("/cfg.pem")


@pytest.mark.parametrize(
    ("value", "size"), [("4096", 4096), ("4k", 4096), ("16K", 16384), ("1m", 1048576), ("12", 12), ("64k", 65536)]
)
def test_max_size_suffixes(value: str, size: int) -> None:
    # the original kept only the first digit of "16k"
    assert load(f"[mgmt]\nmax-size = {value}\n").mgmt.max_size == size
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("value", "listener"),
    [
        ("127.0.0.1:1313", Listener("127.0.0.1", 1313)),
        ("[::1]:80", Listener("::1", 80)),
        ("[2001:db8::1]:1380", Listener("2001:db8::1", 1380)),
        ("localhost:8080", Listener("localhost", 8080)),
        ("0.0.0.0:1", Listener("0.0.0.0", 1)),
    ],
)
def test_listeners(value: str, listener: Listener) -> None:
    assert parse_listener(value) == listener
    assert str(listener).endswith(f":{listener.port}")


@pytest.mark.parametrize("value", ["1313", "::1:1313", "[nothex]:1", "host:0", "host:70000", "host:", "[::1]"])
def test_bad_listeners(value: str) -> None:
    message = error(f"[mgmt]\nlistener = {value}\n")
    assert message.startswith("test.ini:2: [mgmt] listener:")


def test_dns_update_keys(tmp_path: Path) -> None:
    key_file = tmp_path / "tsig.key"
    key_file.write_text('key "acme-update" {\n\talgorithm hmac-sha512;\n\tsecret "c2VjcmV0";\n};\n')
    settings = load(
        '[verification "d"]\ntype = dns01-dnsUpdate\ndns-server = 192.0.2.53:5353\nttl = 30\ntimeout = 2.5\n'
        f"tsig-key-file = {key_file}\nzone = Example.ORG.\npropagation-timeout = 120\n"
    )
    dns = settings.verifications["d"]
    assert isinstance(dns, DnsUpdateVerification)
    assert (dns.dns_server, dns.dns_port, dns.ttl, dns.timeout) == ("192.0.2.53", 5353, 30, 2.5)
    assert (dns.tsig_key_name, dns.tsig_algorithm, dns.tsig_key_secret) == ("acme-update", "hmac-sha512", "c2VjcmV0")
    assert dns.zone == "example.org" and dns.propagation_timeout == 120
    assert dns.check_servers == ()
    assert "c2VjcmV0" not in repr(dns)


def test_dns_update_defaults_and_inline_key() -> None:
    dns = load(
        '[verification "d"]\ntype = dns01-dnsUpdate\ntsig-key-name = k\ntsig-key-secret = c2VjcmV0\n'
        "dns-server = 2001:db8::53\n"
    ).verifications["d"]
    assert isinstance(dns, DnsUpdateVerification)
    assert (dns.dns_server, dns.dns_port, dns.ttl, dns.timeout) == ("2001:db8::53", 53, 60, 5.0)
    assert dns.tsig_algorithm == "hmac-sha256" and dns.zone is None and dns.propagation_timeout == 60


def test_storage_and_auth_keys() -> None:
    settings = load(
        '[storage "f"]\ntype = file\ndirectory = /var/lib/acmems\nrenew-within = 30\n'
        '[auth "a"]\nip = 192.0.2.0/24\nip = 2001:db8::/32\nhmac_type = SHA-256\nhmac_key = k\n'
        "domain = *.Example.org\ndomain = www.example.com.\nstorage = f\n"
        '[auth "b"]\nall = yes\ndomain = *\n'
    )
    assert settings.storages["f"] == FileStorage("f", Path("/var/lib/acmems"), 30.0)
    a, b = settings.auth_blocks
    assert a.ips == (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32"))
    assert a.hmac_type == "sha256" and a.hmac_key == b"k"
    assert a.domains == ("*.example.org", "www.example.com") and a.storage == "f"
    assert b.all and not b.ips and b.hmac_key is None


def test_logging_keys() -> None:
    log = load("[logging]\nlevel = DEBUG\ndestination = /var/log/acmems.log\nformat = json\n").logging
    assert (log.level, log.destination, log.format) == ("debug", "/var/log/acmems.log", "json")


# ---------------------------------------------------------------------- the original's edge cases


def test_repeated_keys_keep_their_order_and_quotes_are_optional() -> None:
    settings = load('[auth mail]\nall = yes\ndomain = b.example\ndomain = a.example\n[auth "other"]\nall = yes\n')
    assert [b.name for b in settings.auth_blocks] == ["mail", "other"]
    assert settings.auth_blocks[0].domains == ("b.example", "a.example")


def test_comments_with_hash_and_semicolon() -> None:
    settings = load("# comment\n; also\n[mgmt]\n  # indented comment\nmax-size = 1k\n")
    assert settings.mgmt.max_size == 1024


def test_options_before_any_section_are_warned_about() -> None:
    settings = load("max-size = 1k\n[mgmt]\n")
    assert settings.mgmt.max_size == 4096
    assert settings.warnings == ("test.ini:1: option 'max-size' stands before any section and is ignored",)


def test_unknown_sections_and_keys_are_warned_about_and_do_not_swallow_lines() -> None:
    settings = load('[mgmt]\nlisten = 1.2.3.4:5\nmax-size = 2k\n[setup]\nplugin = x\n[auth "a"]\nall = yes\n')
    assert settings.mgmt.max_size == 2048
    assert settings.auth_blocks[0].all
    assert any("test.ini:2: [mgmt] unknown key 'listen'" in w for w in settings.warnings)
    assert any("test.ini:4: unknown section [setup]" in w for w in settings.warnings)


def test_several_files_merge_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a.ini", tmp_path / "b.ini"
    first.write_text('[mgmt]\nmax-size = 1k\n[auth "a"]\nall = yes\ndomain = one.example\n')
    second.write_text('[auth "a"]\ndomain = two.example\n[auth "b"]\nall = yes\ndomain = *\n')
    settings = load_settings([first, second])
    assert settings.auth_blocks[0].domains == ("one.example", "two.example")
    assert [b.name for b in settings.auth_blocks] == ["a", "b"]
    assert settings.files == (str(first), str(second))


def test_warnings_for_blocks_without_methods_or_domains() -> None:
    settings = load('[auth "open"]\ndomain = x.example\n[auth "empty"]\nall = yes\n')
    assert any("accepts every client" in w for w in settings.warnings)
    assert any("never matches" in w for w in settings.warnings)


# ------------------------------------------------------------------------------ error messages


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[mgmt\n", "test.ini:1: malformed section header '[mgmt'"),
        ("[mgmt]\nnot a key\n", "test.ini:2: [mgmt]: cannot read 'not a key'"),
        ("[mgmt]\nmax-size = lots\n", "test.ini:2: [mgmt] max-size: 'lots' is not a size"),
        ("[mgmt]\nmax-size = 0\n", "test.ini:2: [mgmt] max-size: the size must be larger than 0"),
        (
            "[mgmt]\nmax-size = 1k\nmax-size = 2k\n",
            "test.ini:3: [mgmt] max-size: may be given only once (first at test.ini:2)",
        ),
        ("[mgmt]\nrequest-timeout = -1\n", "test.ini:2: [mgmt] request-timeout: '-1' must be a number larger than 0"),
        ("[mgmt]\ndefault-storage = nope\n", 'test.ini:2: [mgmt] default-storage: names no [storage "nope"] block'),
        ("[account]\nacme-server = ftp://x\n", "test.ini:2: [account] acme-server: 'ftp://x' is not an http(s) URL"),
        (
            "[account]\naccept-terms-of-service = maybe\n",
            "test.ini:2: [account] accept-terms-of-service: 'maybe' is neither yes, no nor the URL",
        ),
        ("[account]\nemail = nobody\n", "test.ini:2: [account] email: 'nobody' is not an e-mail address"),
        ("[account]\neab-kid = k\n", "test.ini:2: [account] eab-kid: eab-kid and eab-hmac-key must be given together"),
        ("[account]\neab-kid = k\neab-hmac-key = !!\n", "test.ini:3: [account] eab-hmac-key: is not base64url"),
        ('[account "default"]\n', 'test.ini:1: [account "default"]: [account "default"] is the unnamed [account]'),
        ("[auth]\n", "test.ini:1: [auth]: [auth] needs a name"),
        (
            '[verification "v"]\nlistener = 1.2.3.4:5\n',
            "test.ini:2: [verification \"v\"]: the first key must be 'type'",
        ),
        ('[verification "v"]\n', "test.ini:1: [verification \"v\"]: the first key must be 'type'"),
        (
            '[verification "v"]\ntype = tls-alpn\n',
            "test.ini:2: [verification \"v\"] type: unknown type 'tls-alpn'; valid: http01, dns01-dnsUpdate",
        ),
        (
            '[verification "v"]\ntype = dns01-dnsUpdate\nttl = soon\n',
            "test.ini:3: [verification \"v\"] ttl: 'soon' must be a whole number",
        ),
        (
            '[verification "v"]\ntype = dns01-dnsUpdate\ntsig-algorithm = rot13\n',
            "[verification \"v\"] tsig-algorithm: 'rot13' is not a TSIG algorithm",
        ),
        (
            '[verification "v"]\ntype = dns01-dnsUpdate\ntsig-key-name = k\n',
            'test.ini:3: [verification "v"] tsig-key-name: tsig-key-name and tsig-key-secret must be given together',
        ),
        (
            '[verification "v"]\ntype = dns01-dnsUpdate\ntsig-key-name = k\ntsig-key-secret = %%%\n',
            'test.ini:4: [verification "v"] tsig-key-secret: the secret is not valid base64',
        ),
        (
            '[verification "v"]\ntype = dns01-dnsUpdate\ntsig-key-file = /nonexistent/key\n',
            'test.ini:3: [verification "v"] tsig-key-file: cannot read /nonexistent/key',
        ),
        ('[storage "s"]\ntype = file\n', "test.ini:1: [storage \"s\"]: type = file needs 'directory'"),
        (
            '[storage "s"]\ntype = file\ndirectory = /x\nrenew-within = never\n',
            "test.ini:4: [storage \"s\"] renew-within: 'never' is not a number",
        ),
        ('[auth "a"]\nip = 300.1.1.1\n', "test.ini:2: [auth \"a\"] ip: '300.1.1.1' is not an IP address or network"),
        ('[auth "a"]\nhmac_type = md17\nhmac_key = x\n', "test.ini:2: [auth \"a\"] hmac_type: 'md17' is not a hash"),
        (
            '[auth "a"]\nhmac_key = x\n',
            'test.ini:2: [auth "a"] hmac_key: hmac_type and hmac_key must be given together',
        ),
        ('[auth "a"]\nall = perhaps\n', "test.ini:2: [auth \"a\"] all: 'perhaps' is not yes or no"),
        (
            '[auth "a"]\nverification = dns\n',
            'test.ini:2: [auth "a"] verification: names no [verification "dns"] block (defined: http)',
        ),
        (
            '[auth "a"]\nstorage = disk\n',
            'test.ini:2: [auth "a"] storage: names no [storage "disk"] block (defined: none)',
        ),
        ("[logging]\nlevel = loud\n", "test.ini:2: [logging] level: 'loud' is not a level"),
    ],
)
def test_error_messages_name_file_line_section_and_key(text: str, expected: str) -> None:
    assert expected in error(text)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_settings([tmp_path / "missing.ini"])
    binary = tmp_path / "bin.ini"
    binary.write_bytes(b"\xff\xfe[mgmt]")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings([binary])


@given(st.text(max_size=400))
def test_arbitrary_text_gives_settings_or_our_config_error(text: str) -> None:
    try:
        load(text)
    except ConfigError:
        pass


@given(
    st.lists(
        st.sampled_from(
            [
                "[mgmt]",
                "[account]",
                '[auth "a"]',
                '[verification "v"]',
                "[storage s]",
                "[logging]",
                "type = http01",
                "type = file",
                "type = dns01-dnsUpdate",
                "listener = [::1]:1",
                "max-size = 3k",
                "domain = *",
                "ip = ::/0",
                "all = yes",
                "directory = /x",
                "hmac_type = sha256",
                "hmac_key = k",
                "dns-server = 1.2.3.4:53",
                "x = y",
                "verification = v",
                "storage = s",
                "default-storage =",
                "# c",
            ]
        ),
        max_size=25,
    )
)
def test_arbitrary_section_and_key_mixes_give_settings_or_our_config_error(lines: list[str]) -> None:
    try:
        load("\n".join(lines))
    except ConfigError:
        pass


def test_profiles_account_default_block_override_and_empty() -> None:
    settings = load(
        "[account]\nprofile = classic\n"
        '[auth "a"]\nall = yes\ndomain = a.example\n'
        '[auth "b"]\nall = yes\ndomain = b.example\nprofile = shortlived\n'
        '[auth "c"]\nall = yes\ndomain = c.example\nprofile =\n'
    )
    assert settings.account.profile == "classic"
    assert [b.profile for b in settings.auth_blocks] == ["classic", "shortlived", None]
    assert "profile: 'two words' is not a profile name" in error('[auth "a"]\nprofile = two words\n')


def test_renewal_and_timeout_keys() -> None:
    mgmt = load("[mgmt]\nrenewal-interval = 0\nrenew-requested-within = 30\nbody-timeout = 2\nidle-timeout = 5\n").mgmt
    assert (mgmt.renewal_interval, mgmt.renew_requested_within_days, mgmt.body_timeout, mgmt.idle_timeout) == (
        0,
        30,
        2,
        5,
    )
    defaults = load("[mgmt]\n").mgmt
    assert (defaults.renewal_interval, defaults.renew_requested_within_days) == (300, None)
    assert "renewal-interval: '-1' must be a number larger than 0" in error("[mgmt]\nrenewal-interval = -1\n")


def test_dns_check_servers() -> None:
    dns = load(
        '[verification "d"]\ntype = dns01-dnsUpdate\ncheck-server = 192.0.2.54\ncheck-server = [2001:db8::53]:5353\n'
    ).verifications["d"]
    assert isinstance(dns, DnsUpdateVerification)
    assert dns.check_servers == (("192.0.2.54", 53), ("2001:db8::53", 5353))


def test_workers_is_a_process_count() -> None:
    assert load("[account]\ndir = /x\n").mgmt.workers == 1
    assert load("[account]\ndir = /x\n[mgmt]\nworkers = 4\n").mgmt.workers == 4
    assert "'0' must be a whole number larger than 0" in error("[account]\ndir = /x\n[mgmt]\nworkers = 0\n")
    assert "'two' must be a whole number" in error("[account]\ndir = /x\n[mgmt]\nworkers = two\n")
    assert "use 1 to 64" in error("[account]\ndir = /x\n[mgmt]\nworkers = 65\n")


BASE = "[account]\ndir = /x\n"


def test_address_networks_in_auth_blocks() -> None:
    settings = load(BASE + '[auth "hosts"]\naddress = 192.0.2.0/24\naddress = 2001:db8::/32\nall = yes\n')
    assert [str(n) for n in settings.auth_blocks[0].addresses] == ["192.0.2.0/24", "2001:db8::/32"]
    assert not any("never matches" in w for w in settings.warnings)  # addresses alone suffice
    assert "'192.0.2.0/33' is not an IP address or network" in error(
        BASE + '[auth "h"]\naddress = 192.0.2.0/33\nall = yes\n'
    )


def test_addresses_with_a_dns01_verification_are_refused() -> None:
    message = error(
        BASE + '[verification "dns"]\ntype = dns01-dnsUpdate\n[auth "h"]\naddress = 192.0.2.0/24\nall = yes\n'
        "verification = dns\n"
    )
    assert "CAs validate by HTTP-01 only" in message and '[auth "h"] address' in message


def test_the_eab_mac_key_is_in_no_repr() -> None:
    from acmems.core.settings import AccountSettings

    account = AccountSettings(eab_kid="kid-1", eab_hmac_key="c2VjcmV0LW1hYy1rZXk")
    assert "c2VjcmV0LW1hYy1rZXk" not in repr(account) and "kid-1" in repr(account)
