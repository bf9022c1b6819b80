"""Which cached certificates the background task renews (pure), and profile-aware cache keys."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from acmems.renewer import renewal_candidates
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
