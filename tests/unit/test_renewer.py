"""Which cached certificates the background task renews (pure), and profile-aware cache keys."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta

from acmems.issuance.renewer import ari_batch, renewal_candidates
from acmems.storage import CachedCertificate, csr_digest

NOW = datetime(2026, 11, 28, tzinfo=UTC)
DAY = timedelta(days=1)


def entry(
    digest: str, renew_at: datetime, last_requested: datetime, lifetime: timedelta = 90 * DAY
) -> CachedCertificate:
    return CachedCertificate(
        digest,
        ("x.example.org",),
        1,
        renew_at - lifetime / 2,
        renew_at - lifetime / 2 + lifetime,
        renew_at,
        last_requested.timestamp(),
    )


def test_due_and_recently_requested_certificates_are_renewed() -> None:
    due = entry("a", NOW - DAY, NOW - 3 * DAY)
    not_due = entry("b", NOW + DAY, NOW - DAY)
    forgotten = entry("c", NOW - DAY, NOW - 200 * DAY)  # nobody asked for two lifetimes
    assert renewal_candidates([due, not_due, forgotten], NOW, None, {}) == [due]


def test_requested_within_setting_and_backoff() -> None:
    due = entry("a", NOW - DAY, NOW - 10 * DAY)
    assert renewal_candidates([due], NOW, timedelta(days=7), {}) == []
    assert renewal_candidates([due], NOW, timedelta(days=30), {}) == [due]
    assert renewal_candidates([due], NOW, None, {"a": (NOW + timedelta(minutes=5)).timestamp()}) == []
    assert renewal_candidates([due], NOW, None, {"a": (NOW - timedelta(minutes=5)).timestamp()}) == [due]


def test_short_lived_window_is_twice_its_lifetime() -> None:
    recent = entry("a", NOW - timedelta(hours=1), NOW - 10 * DAY, lifetime=6 * DAY)
    assert renewal_candidates([recent], NOW, None, {}) == [recent]
    old = entry("b", NOW - timedelta(hours=1), NOW - 13 * DAY, lifetime=6 * DAY)
    assert renewal_candidates([old], NOW, None, {}) == []


def test_cache_key_is_the_originals_without_a_profile_and_differs_with_one() -> None:
    csr = b"-----BEGIN CERTIFICATE REQUEST-----\nx\n-----END CERTIFICATE REQUEST-----\n"
    assert csr_digest(csr) == hashlib.sha384(csr).hexdigest()
    assert csr_digest(csr, "shortlived") != csr_digest(csr)
    assert csr_digest(csr, "shortlived") != csr_digest(csr, "classic")


def test_renewal_info_is_asked_for_at_most_the_configured_rate_longest_waiting_first() -> None:
    known = []
    for i in range(1000):
        e = dataclasses.replace(entry(f"d{i}", NOW + 30 * DAY, NOW), next_ari_check=NOW.timestamp() - i)
        known.append(("file", e))
    later = dataclasses.replace(entry("later", NOW + 30 * DAY, NOW), next_ari_check=NOW.timestamp() + 60)
    expired = dataclasses.replace(entry("gone", NOW - 90 * DAY, NOW), next_ari_check=0.0)
    batch = ari_batch([*known, ("file", later), ("file", expired)], NOW, 300, 300.0)
    assert len(batch) == 1000  # 300 a minute over a 5-minute pass allows 1,500: all that are due
    assert [e.digest for _s, e in batch][:3] == ["d999", "d998", "d997"]  # waiting longest first
    assert all(e.digest not in ("later", "gone") for _s, e in batch)
    small = ari_batch(known, NOW, 60, 60.0)
    assert [e.digest for _s, e in small] == [f"d{i}" for i in range(999, 939, -1)]  # 60 a minute, one minute
    assert len(ari_batch(known, NOW, 1, 1.0)) == 1  # at least one a pass


def test_a_certificate_is_renewed_only_while_a_block_of_its_storage_allows_every_name() -> None:
    import ipaddress as ip

    from acmems.core.settings import AuthSettings
    from acmems.issuance.renewer import allowed_today

    blocks = (
        AuthSettings("web", domains=("*.example.org",), storage="file"),
        AuthSettings("hosts", addresses=(ip.ip_network("192.0.2.0/24"),), storage="file"),
        AuthSettings("other", domains=("*.example.com",), storage="elsewhere"),
    )
    assert allowed_today(blocks, "file", ["www.example.org", "example.org.example.org"])
    assert allowed_today(blocks, "file", ["192.0.2.7"])
    assert not allowed_today(blocks, "file", ["www.example.org", "192.0.2.7"])  # no single block
    assert not allowed_today(blocks, "file", ["www.example.com"])  # allowed only for another storage
    assert not allowed_today(blocks, "file", ["www.example.net"])  # the block was removed
