"""dns-persist-01 record text, and the answer when a CA offers no challenge of the block's type."""

from __future__ import annotations

import pytest
from acme import messages

from acmems.ca.order import _find_challenge
from acmems.challenges.dns_persist import parse_persist, persist_matches, persist_name, persist_record
from acmems.config import settings_from_sources
from acmems.core.settings import DnsPersistVerification
from acmems.errors import ANSWERS, CaError

URI = "https://ca.test/acct/1"


def test_record_text_and_name() -> None:
    assert persist_name("*.Www.Example.test.") == "_validation-persist.www.example.test"
    assert persist_record("ca.test", URI, wildcard=False) == f"ca.test; accounturi={URI}"
    assert persist_record("ca.test", URI, wildcard=True) == f"ca.test; accounturi={URI}; policy=wildcard"
    value = parse_persist(f"CA.test. ;  AccountURI = {URI} ; policy=wildcard")
    assert value is not None and value.issuer == "ca.test" and value.params["accounturi"] == URI


@pytest.mark.parametrize(
    ("text", "wildcard", "ok"),
    [
        (f"ca.test; accounturi={URI}", False, True),
        (f"ca.test; accounturi={URI}", True, False),  # a wildcard needs policy=wildcard
        (f"ca.test; accounturi={URI}; policy=wildcard", True, True),
        (f"ca.test; accounturi={URI}; policy=wildcard", False, True),
        (f"other.test; accounturi={URI}", False, False),
        ("ca.test; accounturi=https://ca.test/acct/2", False, False),
        ("ca.test", False, False),
        ("not a record", False, False),
        ("ca.test; novalue", False, False),
    ],
)
def test_which_records_let_the_account_be_issued(text: str, wildcard: bool, ok: bool) -> None:
    assert persist_matches(text, ("ca.test", "second.test"), URI, wildcard=wildcard) is ok


def test_a_ca_without_the_challenge_is_a_502_naming_it_and_what_it_offers() -> None:
    authz = messages.AuthorizationResource(
        uri="https://ca.test/authz/1",
        body=messages.Authorization.from_json(
            {
                "identifier": {"type": "dns", "value": "a.example.test"},
                "status": "pending",
                "challenges": [
                    {"type": "http-01", "url": "https://ca.test/c/1", "token": "a" * 43, "status": "pending"},
                    {"type": "dns-01", "url": "https://ca.test/c/2", "token": "b" * 43, "status": "pending"},
                ],
            }
        ),
    )

    class Solver:
        name = "persist"
        challenge_type = "dns-persist-01"

        async def present(self, identifier: str, token: str, validation: str) -> None: ...
        async def cleanup(self, identifier: str, token: str, validation: str) -> None: ...
        def warnings(self) -> list[str]:
            return []

        async def recover(self) -> int:
            return 0

    with pytest.raises(CaError) as raised:
        _find_challenge(authz, Solver(), "https://ca.test/dir")
    assert ANSWERS[raised.value.kind].status == 502
    assert raised.value.message.startswith(
        "the CA https://ca.test/dir offers no dns-persist-01 challenge for a.example.test (offered: http-01, dns-01)"
    )


def test_config_persist_with_and_without_a_dns_server() -> None:
    bare = settings_from_sources([("t.ini", '[verification "p"]\ntype = dns01-persist\n')]).verifications["p"]
    assert isinstance(bare, DnsPersistVerification) and bare.update is None
    text = '[verification "p"]\ntype = dns01-persist\ndns-server = 192.0.2.1:5353\n'
    full = settings_from_sources([("t.ini", text)]).verifications["p"]
    assert isinstance(full, DnsPersistVerification) and full.update is not None
    assert full.update.dns_servers == (("192.0.2.1", 5353),)
