"""The cluster's benchmarks (part of `make bench`; alone: `.venv/bin/python bench/cluster.py`).

A real PostgreSQL 15, one Pebble, three acmems on one database behind nginx (plain round robin), and
a single acmems with a file cache in the same run:
- cache hits through a cluster instance against the single node (target: >= 80% of its requests/s);
- a fresh HTTP-01 certificate through the cluster against the single node (target: median at most
  20 ms above it);
- 30 distinct CSRs, each posted to all three instances at once: certificates issued (counted at the
  CA; target exactly 30) and wall time;
- database transactions per cache hit and per issuance (acmems_database_transactions_total, less what
  the instance runs idle in the same time);
- 100,000 certificates in the database (moved over by ``acmems import``): start, index, memory, ``acmems list``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import ini  # noqa: E402
from tests.conftest import hmac_header, make_csr  # noqa: E402
from tests.pgservice import PASSWORD, Postgres  # noqa: E402
from tests.realservices import Acmems, Bind, Nginx, Pebble, free_port, wait_for  # noqa: E402

from bench.loadgen import csr_files, curl_time, post_script, rss_mb, sequential, summary, wrk  # noqa: E402

Result = dict[str, Any]
HMAC_KEY = "bench-hmac-key"


def log(text: str) -> None:
    print(f"[bench cluster {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _config(
    pebble: Pebble, work: Path, mgmt: int, http: int, name: str, db_port: int | None = None, db: str = "acmems"
) -> str:
    """One acmems: with ``db_port`` a cluster instance on that PostgreSQL, else a file cache."""
    sections = [
        ini.account(pebble, work / "account"),
        ini.mgmt(mgmt, renewal_interval=0),
        ini.http01("http", http),
    ]
    if db_port is not None:
        secret = work / "db-password"
        secret.write_text(PASSWORD + "\n")
        sections += [
            ini.cluster(f"postgresql://acmems@127.0.0.1:{db_port}/{db}", secret, name),
            ini.database_storage("store"),
        ]
    else:
        sections.append(ini.file_storage("store", work / f"files-{name}"))
    sections += [
        ini.auth("hit", ["cache.example.test"], ip="127.0.0.1", hmac_key=HMAC_KEY, storage="store"),
        ini.auth("http", ["*.example.test"], ip="127.0.0.1", storage="store"),
    ]
    return ini.ini(*sections)


def _metric(server: Acmems, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.mgmt_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else float("nan")


def _issued(pebble: Pebble) -> int:
    return pebble.log.read_text(errors="replace").count("Issued certificate serial")


def _fresh(url: str, work: Path, prefix: str, samples: int) -> Result:
    times, failures = sequential(url, csr_files(work, [[f"{prefix}{i}.example.test"] for i in range(samples)]))
    return {**summary(times), "failures": failures}


def _hits(server: Acmems, work: Path, seconds: int) -> Result:
    url = f"http://127.0.0.1:{server.mgmt_port}/sign"
    csr = make_csr(["cache.example.test"])[0]
    headers = {"Authentication": hmac_header(csr, HMAC_KEY)}
    path = work / f"hit-{server.mgmt_port}.csr"
    path.write_bytes(csr)
    status, _ = curl_time(url, path, headers)
    assert status == 200, status
    return wrk(url, 16, seconds, post_script(work, csr, headers))


def _transactions_per(server: Acmems, action: Any, count: int) -> float:
    """Database transactions per action, less what the instance runs idle in as long."""
    idle_before, started = _metric(server, "acmems_database_transactions_total"), time.perf_counter()
    time.sleep(3)
    idle_rate = (_metric(server, "acmems_database_transactions_total") - idle_before) / (time.perf_counter() - started)
    before, started = _metric(server, "acmems_database_transactions_total"), time.perf_counter()
    action()
    spent = _metric(server, "acmems_database_transactions_total") - before
    background = idle_rate * (time.perf_counter() - started)
    return max(0.0, spent - background) / count


def bench_cluster(work: Path, bind: Bind, seconds: int, samples: int, *, scale: bool = True) -> Result:
    work = work / "cluster"  # beside make bench's other measures, in a folder of its own
    work.mkdir(parents=True, exist_ok=True)
    results: Result = {}
    postgres = Postgres().start()
    pebble = Pebble(work / "pebble", bind.port, free_port())
    try:
        pebble.start()
        _measure(work, seconds, samples, postgres, pebble, results, scale=scale)
    finally:
        pebble.stop()
        postgres.remove()  # stopped (SIGINT) and its folder removed, whatever happened
    return results


def _measure(
    work: Path, seconds: int, samples: int, postgres: Postgres, pebble: Pebble, results: Result, *, scale: bool
) -> None:
    http = pebble.http_port
    log("the single node (file cache), answering the CA's checks itself")
    mgmt = free_port()
    single = Acmems(work / "single", _config(pebble, work, mgmt, http, "single"), mgmt).start()
    try:
        results["single_fresh_http01"] = _fresh(f"http://127.0.0.1:{mgmt}/sign", work / "csr-s", "single", samples)
        results["single_cache_hit_c16"] = _hits(single, work, seconds)
    finally:
        single.stop()
    ports = [(free_port(), free_port()) for _ in range(3)]
    servers: list[Acmems] = []
    proxy = Nginx(work / "nginx", http, [h for _, h in ports], retry_404=False).start()
    try:
        for letter, (m, h) in zip("abc", ports, strict=True):
            server = Acmems(work / f"node-{letter}", _config(pebble, work, m, h, f"node-{letter}", postgres.port), m)
            servers.append(server.start())
        a = servers[0]
        url = f"http://127.0.0.1:{a.mgmt_port}/sign"
        log("a fresh HTTP-01 certificate through a cluster instance")
        results["cluster_fresh_http01"] = _fresh(url, work / "csr-c", "cluster", samples)
        log("cache hits through a cluster instance, c=16")
        results["cluster_cache_hit_c16"] = _hits(a, work, seconds)
        results["cache_hit_ratio"] = results["cluster_cache_hit_c16"]["rps"] / results["single_cache_hit_c16"]["rps"]
        results["fresh_median_above_single_ms"] = (
            results["cluster_fresh_http01"]["median_ms"] - results["single_fresh_http01"]["median_ms"]
        )
        log("database transactions per cache hit and per issuance")
        hit = work / f"hit-{a.mgmt_port}.csr"
        headers = {"Authentication": hmac_header(hit.read_bytes(), HMAC_KEY)}
        results["db_transactions_per_cache_hit"] = _transactions_per(
            a, lambda: [curl_time(url, hit, headers) for _ in range(200)], 200
        )
        fresh = csr_files(work / "csr-tx", [[f"tx{i}.example.test"] for i in range(10)])
        results["db_transactions_per_issuance"] = _transactions_per(
            a, lambda: [curl_time(url, p) for p in fresh], len(fresh)
        )
        log("30 distinct CSRs, each posted to all three instances at once")
        burst = csr_files(work / "csr-30", [[f"burst{i}.example.test"] for i in range(30)])
        before = _issued(pebble)
        jobs = [(s, p) for p in burst for s in servers]
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
            answers = list(pool.map(lambda j: curl_time(f"http://127.0.0.1:{j[0].mgmt_port}/sign", j[1]), jobs))
        results["burst_30x3"] = {
            "wall_s": time.perf_counter() - started,
            "requests": len(jobs),
            "ok": sum(1 for status, _ in answers if status == 200),
            "certificates_issued": _issued(pebble) - before,
        }
    finally:
        for server in servers:
            server.stop()
        proxy.stop()
    if scale:
        results["scale_100k"] = _scale(work, pebble, postgres)


def _scale(work: Path, pebble: Pebble, postgres: Postgres) -> Result:
    from bench.run import fill_cache

    log("100,000 certificates moved into the database with acmems import")
    postgres.psql("CREATE DATABASE scale OWNER acmems", database="postgres")
    files = work / "files-import"
    fill_cache(files, 100_000)
    mgmt, http = free_port(), free_port()
    config = _config(pebble, work, mgmt, http, "scale", postgres.port, db="scale").replace(
        '[auth "hit"]', f'[storage "old"]\ntype = file\ndirectory = {files}\n\n[auth "hit"]'
    )
    path = work / "scale.ini"
    path.write_text(config)
    acmems = str(Path(sys.executable).parent / "acmems")
    started = time.perf_counter()
    moved = subprocess.run(
        [acmems, "import", str(path), "--from", "old", "--to", "store"], capture_output=True, text=True
    )
    result: Result = {"import_s": time.perf_counter() - started, "import_out": moved.stdout.strip()}
    empty_mgmt = free_port()
    empty = Acmems(work / "scale-empty", _config(pebble, work, empty_mgmt, free_port(), "empty"), empty_mgmt)
    empty.start()
    time.sleep(1)
    assert empty.proc is not None
    baseline = rss_mb(empty.proc.pid)
    empty.stop()
    listing = work / "scale-list.ini"  # the database storage alone (the file cache is measured in run.py)
    listing.write_text(_config(pebble, work, mgmt, http, "scale", postgres.port, db="scale"))
    server = Acmems(work / "scale", listing.read_text(), mgmt)
    started = time.perf_counter()
    server.start()
    result["start_s"] = time.perf_counter() - started
    wait_for(lambda: "indexed in" in server.log_text(), 120, "the index")
    indexed = re.search(r"(\d+) certificate\(s\) cached in database.*indexed in ([\d.]+) s", server.log_text())
    time.sleep(1)
    assert server.proc is not None
    result["index_s"] = float(indexed.group(2)) if indexed else float("nan")
    result["indexed"] = int(indexed.group(1)) if indexed else 0
    result["rss_added_mb"] = rss_mb(server.proc.pid) - baseline
    server.stop()
    started = time.perf_counter()
    listed = subprocess.run([acmems, "list", str(listing)], capture_output=True, text=True)
    result["list_s"] = time.perf_counter() - started
    result["list_lines"] = listed.stdout.count("\n")
    return result


def cluster_table(r: Result) -> str:
    """The markdown rows of docs/benchmarks.md's cluster section."""
    burst = r["burst_30x3"]
    scale = r["scale_100k"]
    rows = [
        "| measure | cluster instance | single node (file cache) | target |",
        "|---|---|---|---|",
        f"| cache hits c=16 | {r['cluster_cache_hit_c16']['rps']:,.0f}/s | {r['single_cache_hit_c16']['rps']:,.0f}/s "
        f"| ratio {r['cache_hit_ratio']:.2f} (>= 0.80) |",
        f"| fresh HTTP-01, median | {r['cluster_fresh_http01']['median_ms']:.0f} ms "
        f"| {r['single_fresh_http01']['median_ms']:.0f} ms | +{r['fresh_median_above_single_ms']:.0f} ms (<= 20) |",
        f"| 30 CSRs x 3 instances at once | {burst['ok']}/{burst['requests']} answered, "
        f"{burst['certificates_issued']} certificates, {burst['wall_s']:.2f} s | | exactly 30 |",
        f"| database transactions per cache hit | {r['db_transactions_per_cache_hit']:.3f} | 0 | none |",
        f"| database transactions per issuance | {r['db_transactions_per_issuance']:.1f} | 0 | |",
        f"| 100,000 in the database: import | {scale['import_s']:.1f} s | | |",
        f"| 100,000: ready / index / memory added | {scale['start_s']:.2f} s / {scale['index_s']:.1f} s / "
        f"{scale['rss_added_mb']:.0f} MiB | | at once / 10 s / 100 MiB |",
        f"| 100,000: `acmems list` | {scale['list_s']:.1f} s | | 3 s |",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--scale-only", action="store_true", help="only the 100,000-certificate measures")
    parser.add_argument("--no-scale", action="store_true", help="all but the 100,000-certificate measures")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="acmems-bench-cluster-"))
    bind = Bind(work / "bind").start()
    try:
        if args.scale_only:
            postgres = Postgres().start()
            pebble = Pebble(work / "pebble", bind.port, free_port()).start()
            try:
                print(json.dumps(_scale(work, pebble, postgres), indent=2, default=str))
            finally:
                pebble.stop()
                postgres.remove()
            return 0
        results = bench_cluster(work, bind, args.seconds, args.samples, scale=not args.no_scale)
    finally:
        bind.stop()
    print(json.dumps(results, indent=2, default=str))
    if "scale_100k" in results:
        print(cluster_table(results))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
