"""The LRU memo, and the reports workers send, validated on receipt."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acmems.lru import Lru
from acmems.workers.messages import WorkerReport


def test_lru_keeps_the_most_recent_entries() -> None:
    memo: Lru[str, int] = Lru(2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1  # "a" is now the most recent
    memo.put("c", 3)
    assert (memo.get("a"), memo.get("b"), memo.get("c"), len(memo)) == (1, None, 3, 2)
    assert memo.pop("a") == 1 and memo.pop("a") is None
    memo.clear()
    assert len(memo) == 0
    with pytest.raises(ValueError, match="at least one"):
        Lru(0)


def test_a_report_survives_the_trip() -> None:
    report = WorkerReport(3, True, {200: 12.0, 403: 1.0}, 12.0, {"file": ("ab12", "cd34")})
    assert WorkerReport.from_json(report.to_json()) == report
    assert WorkerReport(2).empty and not report.empty


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "a report is a JSON object"),
        ({"worker": 0}, "worker must be"),
        ({"worker": True}, "worker must be"),
        ({"worker": 2, "ready": "yes"}, "ready must be"),
        ({"worker": 2, "requests": {"abc": 1}}, "is not an HTTP status"),
        ({"worker": 2, "requests": {"200": -1}}, "must be a count"),
        ({"worker": 2, "requests": {"200": "many"}}, "must be a count"),
        ({"worker": 2, "cache_hits": float("inf")}, "must be a count"),
        ({"worker": 2, "requested": {"file": "ab12"}}, "must be a list of digests"),
        ({"worker": 2, "requested": {"file": ["../etc"]}}, "must be a list of digests"),
        ({"worker": 2, "requested": []}, "must be objects"),
    ],
)
def test_a_malformed_report_is_refused_naming_what_is_wrong(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WorkerReport.from_json(json.dumps(raw).encode())


@given(st.binary(max_size=200))
def test_any_bytes_are_a_report_or_a_value_error(data: bytes) -> None:
    try:
        WorkerReport.from_json(data)
    except ValueError:
        pass
