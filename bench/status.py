"""`GET /status` and `/metrics` with a large cache: the time to render the first page, a page deep
in the list, and the metrics (totals only above [notify] metrics-certificates), over 100,000
certificates in the file layout. Part of `make bench`; alone: `python -m bench.status`."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import ini  # noqa: E402
from tests.realservices import Acmems, Bind, Pebble, free_port, wait_for  # noqa: E402

Result = dict[str, Any]


def _get_ms(url: str, times: int) -> tuple[float, int]:
    took = []
    size = 0
    for _ in range(times):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as answer:  # noqa: S310 - loopback
            size = len(answer.read())
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took), size


def bench_status(work: Path, bind: Bind, storage: Path, count: int) -> Result:
    """Figures of ``/status`` and ``/metrics`` with the ``count`` certificates in ``storage``."""
    pebble = Pebble(work / f"pebble-status-{count}", bind.port, free_port()).start()
    mgmt = free_port()
    config = ini.ini(
        ini.account(pebble, work / "status-account"),
        ini.mgmt(mgmt),
        ini.http01("http", free_port()),
        ini.file_storage("file", storage),
        ini.auth("local", ["*.example.test"], ip="127.0.0.1"),
    )
    server = Acmems(work / f"acmems-status-{count}", config, mgmt).start()
    try:
        wait_for(lambda: "indexed in" in server.log_text(), 300, "the cache index")
        base = f"http://127.0.0.1:{mgmt}"
        first_ms, first_bytes = _get_ms(f"{base}/status", 10)
        deep_ms, _ = _get_ms(f"{base}/status?page={count // 200}", 10)
        metrics_ms, metrics_bytes = _get_ms(f"{base}/metrics", 10)
        return {
            "certificates": count,
            "status_first_page_ms": first_ms,
            "status_page_bytes": first_bytes,
            "status_deep_page_ms": deep_ms,
            "metrics_ms": metrics_ms,
            "metrics_bytes": metrics_bytes,
        }
    finally:
        server.stop()
        pebble.stop()


def main() -> int:
    from bench.run import fill_cache

    work = Path(tempfile.mkdtemp(prefix="acmems-bench-status-"))
    bind = Bind(work / "bind").start()
    try:
        for count in (10_000, 100_000):
            storage = work / f"store-{count}"
            fill_cache(storage, count)
            print(bench_status(work, bind, storage, count))
    finally:
        bind.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
