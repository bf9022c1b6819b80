"""The CNAME walk of DNS-01 delegation, fed constructed answers (no server)."""

from __future__ import annotations

import dns.rcode
import dns.rrset
import pytest

from acmems.challenges.dns_chain import MAX_HOPS, Chain, ChainError, CnameWalk
from acmems.config import settings_from_sources
from acmems.core.settings import DnsUpdateVerification


def cname(owner: str, target: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(owner + ".", 5, "IN", "CNAME", target + ".")


def test_no_cname_ends_at_the_name() -> None:
    walk = CnameWalk("_acme-challenge.a.test")
    assert walk.feed(dns.rcode.NOERROR, []) == Chain("_acme-challenge.a.test")
    assert CnameWalk("_acme-challenge.a.test").feed(dns.rcode.NXDOMAIN, []) == Chain("_acme-challenge.a.test")


def test_hop_by_hop_and_several_hops_in_one_answer() -> None:
    walk = CnameWalk("_acme-challenge.a.test")
    assert walk.feed(dns.rcode.NOERROR, [cname("_acme-challenge.a.test", "b.test")]) is None
    assert walk.query == "b.test"
    # a server that followed two hops inside its zone
    assert walk.feed(dns.rcode.NOERROR, [cname("b.test", "c.test"), cname("c.test", "D.acme.test")]) is None
    assert walk.query == "d.acme.test"
    chain = walk.feed(dns.rcode.NOERROR, [])
    assert chain is not None and chain.target == "d.acme.test"
    assert chain.describe() == "_acme-challenge.a.test -> b.test -> c.test -> d.acme.test"


def test_loop_too_many_dname_and_servfail_are_refused() -> None:
    walk = CnameWalk("x.test")
    walk.feed(dns.rcode.NOERROR, [cname("x.test", "y.test")])
    with pytest.raises(ChainError, match=r"CNAME loop: x.test -> y.test -> x.test"):
        walk.feed(dns.rcode.NOERROR, [cname("y.test", "x.test")])
    walk = CnameWalk("h0.test")
    with pytest.raises(ChainError, match=f"more than {MAX_HOPS} CNAMEs"):
        for i in range(MAX_HOPS + 1):
            walk.feed(dns.rcode.NOERROR, [cname(f"h{i}.test", f"h{i + 1}.test")])
    dname = dns.rrset.from_text("d.test.", 5, "IN", "DNAME", "acme.test.")
    with pytest.raises(ChainError, match="does not follow DNAME"):
        CnameWalk("_acme-challenge.x.d.test").feed(dns.rcode.NOERROR, [dname, cname("_acme-challenge.x.d.test", "y")])
    with pytest.raises(ChainError, match="points at the DNS root"):
        CnameWalk("x.test").feed(dns.rcode.NOERROR, [dns.rrset.from_text("x.test.", 5, "IN", "CNAME", ".")])
    with pytest.raises(ChainError, match=r"SERVFAIL.*loop"):
        CnameWalk("x.test").feed(dns.rcode.SERVFAIL, [])


def test_config_several_primaries_and_follow_cname() -> None:
    text = (
        '[verification "d"]\ntype = dns01-dnsUpdate\ndns-server = 192.0.2.1\ndns-server = 192.0.2.2:5353\n'
        "follow-cname = no\n"
    )
    verification = settings_from_sources([("t.ini", text)]).verifications["d"]
    assert isinstance(verification, DnsUpdateVerification)
    assert verification.dns_servers == (("192.0.2.1", 53), ("192.0.2.2", 5353))
    assert verification.follow_cname is False
    default = settings_from_sources([("t.ini", '[verification "d"]\ntype = dns01-dnsUpdate\n')]).verifications["d"]
    assert isinstance(default, DnsUpdateVerification) and default.follow_cname is True
