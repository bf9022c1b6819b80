"""The ACME server's benchmarks (part of `make bench`; alone: `.venv/bin/python bench/acme_server.py`).

Real clients, one Pebble each way (its HTTP-01 port is the client's or acmems' own):
- certbot (the test venv's) and lego (Debian): wall time of one fresh certificate through acmems'
  [acme-server] against the same client straight to Pebble (target: at most 1.2x);
- the same CSR again through acmems (certbot --csr): the cache hit;
- 50 ACME clients' orders at once (tests/acme_raw.py in threads: account, order, finalize,
  certificate): all succeed, wall time, CPU of acmems and Pebble.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from tests import ini  # noqa: E402
from tests.acme_clients import AcmeSite  # noqa: E402
from tests.acme_raw import RawClient, b64  # noqa: E402
from tests.conftest import make_csr  # noqa: E402
from tests.realservices import Acmems, Bind, Pebble, free_port, tool  # noqa: E402

from bench.loadgen import cpu_seconds, summary  # noqa: E402

Result = dict[str, Any]
CERTBOT = str(Path(sys.executable).with_name("certbot"))


def log(text: str) -> None:
    print(f"[bench acme-server {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _run(command: list[str], env: dict[str, str], cwd: Path) -> float:
    cwd.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False, timeout=300)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return elapsed


def _certbot(state: Path, server: str, ca_file: Path, *args: str) -> float:
    base = [CERTBOT, "--config-dir", str(state), "--work-dir", str(state), "--logs-dir", str(state)]
    base += ["--server", server, "--non-interactive", "--agree-tos", "--register-unsafely-without-email"]
    return _run([*base, "certonly", *args], dict(os.environ, REQUESTS_CA_BUNDLE=str(ca_file)), state)


def _lego(state: Path, server: str, ca_file: Path, *args: str) -> float:
    base = [tool("lego"), "--server", server, "--path", str(state / "lego"), "--accept-tos"]
    base += ["--email", "bench@example.test", *args, "run"]
    return _run(base, dict(os.environ, LEGO_CA_CERTIFICATES=str(ca_file)), state / "cwd")


def _fresh(samples: int, run: Callable[[int], float]) -> dict[str, float]:
    """``samples`` timed runs of a client for fresh names, after one that registers (not counted)."""
    return summary([run(i) for i in range(samples + 1)][1:])


def _start(work: Path, pebble: Pebble) -> tuple[AcmeSite, Acmems]:
    site = AcmeSite.make(work / "site")
    block = ini.auth("bench", ["*.example.test"], ip="127.0.0.1", storage="file")
    config = site.config(pebble, block).replace("[mgmt]\n", "[mgmt]\nrenewal-interval = 0\n")
    return site, Acmems(work / "acmems", config, site.mgmt_port).start()


def _fifty(site: AcmeSite, clients: int) -> tuple[float, int]:
    """``clients`` raw ACME clients at once, each its own account and a fresh certificate."""
    csrs = []
    for index in range(clients):
        pem, _ = make_csr([f"load{index}.example.test"])
        csrs.append(b64(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)))

    def one(index: int) -> bool:
        raw = RawClient(site.port, site.ca_file)
        if raw.new_account().status != 201:
            return False
        order = raw.new_order([f"load{index}.example.test"]).json()
        state = raw.post(order["finalize"], {"csr": csrs[index]}).json()
        url = order["finalize"].removesuffix("/finalize")
        while state.get("status") == "processing":
            state = raw.post(url, None).json()
        return state.get("status") == "valid" and raw.post(state["certificate"], None).status == 200

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(clients)))
    return time.perf_counter() - started, results.count(False)


def bench_acme_server(work: Path, bind: Bind, samples: int) -> Result:
    work = work / "acme-server"
    result: Result = {}
    # straight to Pebble: the client answers HTTP-01 itself on Pebble's port
    direct_http = free_port()
    direct = Pebble(work / "pebble-direct", bind.port, direct_http).start()
    via = Pebble(work / "pebble-via", bind.port, free_port()).start()
    site, server = _start(work, via)
    try:
        assert server.proc is not None
        log("certbot straight to Pebble (standalone HTTP-01), first run registers, not counted")
        standalone = ("--standalone", "--http-01-port", str(direct_http), "--http-01-address", "127.0.0.1")
        cb_direct = work / "cb-direct"
        result["certbot_direct"] = _fresh(
            samples,
            lambda i: _certbot(
                cb_direct, direct.directory_url, direct.ca_bundle, *standalone, "-d", f"cd{i}.example.test"
            ),
        )
        log("certbot through acmems")
        manual = ("--manual", "--preferred-challenges", "http", "--manual-auth-hook", "/bin/false")
        cb_via = work / "cb-via"
        result["certbot_acmems"] = _fresh(
            samples, lambda i: _certbot(cb_via, site.url, site.ca_file, *manual, "-d", f"cv{i}.example.test")
        )
        log("certbot through acmems, the same CSR again (cache hit)")
        csr = work / "same.csr"
        csr.write_bytes(make_csr(["same.example.test"])[0])
        paths = (
            "--cert-path",
            str(work / "same.crt"),
            "--fullchain-path",
            str(work / "same.full"),
            "--chain-path",
            str(work / "same.chain"),
        )
        _certbot(cb_via, site.url, site.ca_file, *manual, "--csr", str(csr), *paths)
        hits = []
        for _ in range(samples):
            for path in ("same.crt", "same.full", "same.chain"):
                (work / path).unlink(missing_ok=True)
            hits.append(_certbot(cb_via, site.url, site.ca_file, *manual, "--csr", str(csr), *paths))
        result["certbot_acmems_same_csr"] = summary(hits)
        log("lego straight to Pebble (HTTP-01 on Pebble's port), first run registers, not counted")
        lego_http = ("--http", "--http.port", f"127.0.0.1:{direct_http}")
        result["lego_direct"] = _fresh(
            samples,
            lambda i: _lego(
                work / "lego-direct", direct.directory_url, direct.ca_bundle, *lego_http, "-d", f"ld{i}.example.test"
            ),
        )
        log("lego through acmems")
        lego_idle = ("--http", "--http.port", f"127.0.0.1:{free_port()}")
        result["lego_acmems"] = _fresh(
            samples, lambda i: _lego(work / "lego-via", site.url, site.ca_file, *lego_idle, "-d", f"lv{i}.example.test")
        )
        log("50 ACME clients at once")
        assert via.proc is not None
        cpu = (cpu_seconds(server.proc.pid), cpu_seconds(via.proc.pid))
        wall, failures = _fifty(site, 50)
        result["concurrent_50"] = {
            "wall_s": wall,
            "failures": failures,
            "cpu_s_acmems": cpu_seconds(server.proc.pid) - cpu[0],
            "cpu_s_pebble": cpu_seconds(via.proc.pid) - cpu[1],
        }
    finally:
        server.stop()
        direct.stop()
        via.stop()
    for client in ("certbot", "lego"):
        result[f"{client}_ratio"] = result[f"{client}_acmems"]["median_ms"] / result[f"{client}_direct"]["median_ms"]
    return result


def acme_table(r: Result) -> str:
    """The markdown rows of docs/benchmarks.md's ACME server section."""

    def ms(x: dict[str, float]) -> str:
        return f"{x['median_ms']:.0f} ms (p90 {x['p90_ms']:.0f})"

    c = r["concurrent_50"]
    rows = [
        "| measure | straight to Pebble | through acmems | target | met |",
        "|---|---|---|---|---|",
        f"| certbot, one fresh certificate (wall, median) | {ms(r['certbot_direct'])} | {ms(r['certbot_acmems'])} | "
        f"<= 1.2x | {r['certbot_ratio']:.2f}x {'yes' if r['certbot_ratio'] <= 1.2 else 'NO'} |",
        f"| lego, one fresh certificate (wall, median) | {ms(r['lego_direct'])} | {ms(r['lego_acmems'])} | "
        f"<= 1.2x | {r['lego_ratio']:.2f}x {'yes' if r['lego_ratio'] <= 1.2 else 'NO'} |",
        f"| certbot, the same CSR again (cache hit) | | {ms(r['certbot_acmems_same_csr'])} | (reported) | |",
        f"| 50 ACME clients at once: wall, failures (CPU s acmems / Pebble) | | {c['wall_s']:.2f} s, "
        f"{c['failures']} ({c['cpu_s_acmems']:.2f} / {c['cpu_s_pebble']:.2f}) | all succeed | "
        f"{'yes' if c['failures'] == 0 else 'NO'} |",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=5, help="certificates per client and way (5)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="acmems-bench-acme-"))
    bind = Bind(work / "bind").start()
    try:
        result = bench_acme_server(work, bind, args.samples)
    finally:
        bind.stop()
    print(json.dumps(result, indent=2))
    print(acme_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
