"""`make bench`: acmems against the acme library's floor, macen 0.5.0, certbot and lego, and its ACME
server (bench/acme_server.py), in one run.

Everything runs on loopback: Pebble 2.10 (PEBBLE_VA_NOSLEEP=1), BIND 9 with TSIG, nginx, wrk, and
PostgreSQL 15 for the cluster's measures (bench/cluster.py).
Writes bench/results/<date>.json and prints a markdown table (docs/benchmarks.md keeps the latest).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dns.tsig  # noqa: E402
from tests import ini  # noqa: E402
from tests.conftest import hmac_header, make_csr  # noqa: E402
from tests.realservices import Acmems, Bind, Pebble, _connects, _stop, free_port, spawn, wait_for  # noqa: E402

from bench.acme_server import acme_table, bench_acme_server  # noqa: E402
from bench.cluster import bench_cluster, cluster_table  # noqa: E402
from bench.floor import AcmeFloor  # noqa: E402
from bench.loadgen import (  # noqa: E402
    cpu_seconds,
    csr_files,
    curl_time,
    post_script,
    rss_mb,
    sequential,
    summary,
    wrk,
)
from bench.status import bench_status  # noqa: E402

HMAC_KEY = "bench-hmac-key"
Result = dict[str, Any]


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the curl processes, once waited for
    return usage.ru_utime + usage.ru_stime


def at_once(url: str, csrs: list[Path], headers: dict[str, str] | None = None) -> Result:
    cpu = _children_cpu()
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(csrs)) as pool:
        statuses = list(pool.map(lambda c: curl_time(url, c, headers)[0], csrs))
    wall = time.perf_counter() - started
    ok = sum(1 for s in statuses if s == 200)
    return {
        "wall_s": wall,
        "certs_per_s": ok / wall,
        "failures": len(csrs) - ok,
        "n": len(csrs),
        "cpu_s_curl": _children_cpu() - cpu,
    }


WORKERS = os.cpu_count() or 1  # processes on the management listener in the load runs ([mgmt] workers)


def acmems_config(
    pebble: Pebble, work: Path, mgmt: int, http: int, bind: Bind, storage: Path, account: Path, workers: int = 1
) -> str:
    return ini.ini(
        ini.account(pebble, account),
        ini.mgmt(mgmt, default_verification="http", workers=workers),
        ini.http01("http", http),
        ini.dns01("dns", bind),
        ini.file_storage("file", storage),
        *_AUTH_BLOCKS,
        ini.auth("dns", ["*.sub.example2.test"], ip="127.0.0.1", verification="dns"),
    )


# The blocks macen and acmems are benchmarked with alike.
_AUTH_BLOCKS = (
    ini.auth("hit", ["cache.example.test"], ip="127.0.0.1", hmac_key=HMAC_KEY),
    ini.auth("http", ["*.example.test"], ip="127.0.0.1"),
)


@contextmanager
def blackhole() -> Iterator[tuple[int, list[str]]]:
    """A port that accepts the CA's HTTP-01 check and never answers, so the authorization stays
    pending (~15 s with Pebble) and its token stays known to acmems; the tokens seen are listed."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    tokens: list[str] = []
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            request = conn.recv(1024).decode(errors="replace")
            if request.startswith("GET /.well-known/acme-challenge/"):
                tokens.append(request.split()[1].rsplit("/", 1)[-1])
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1]), tokens
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        sock.close()


def known_token_load(work: Path, bind: Bind, connections: int, seconds: int) -> Result:
    """wrk against acmems' challenge listener for a token of a pending authorization."""
    with blackhole() as (hole_port, tokens):
        pebble = Pebble(work / f"pebble-hold-{connections}", bind.port, hole_port).start()
        mgmt, http = free_port(), free_port()
        server = Acmems(
            work / f"acmems-hold-{connections}",
            acmems_config(
                pebble, work, mgmt, http, bind, work / f"hold-store-{connections}", work / f"hold-account-{connections}"
            ),
            mgmt,
        ).start()
        try:
            csr = work / f"hold-{connections}.csr"
            csr.write_bytes(make_csr([f"hold{connections}.example.test"])[0])
            request = threading.Thread(target=curl_time, args=(f"http://127.0.0.1:{mgmt}/sign", csr), daemon=True)
            request.start()
            wait_for(lambda: bool(tokens), 20, "the CA's HTTP-01 check")
            return wrk(f"http://127.0.0.1:{http}/.well-known/acme-challenge/{tokens[0]}", connections, seconds)
        finally:
            server.stop(signal_kill())
            pebble.stop()


def signal_kill() -> int:
    import signal

    return int(signal.SIGKILL)


def fill_cache(directory: Path, count: int) -> None:
    """``count`` certificates in the file cache's layout (self-issued; only their metadata is read)."""
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    now = datetime.datetime.now(datetime.UTC)
    for index in range(count):
        name = f"host{index}.example.test"
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(index + 1)
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=True)
            .sign(key, hashes.SHA256())
        )
        pem = cert.public_bytes(serialization.Encoding.PEM)
        csr = f"-----BEGIN CERTIFICATE REQUEST-----\n{name}\n-----END CERTIFICATE REQUEST-----\n".encode()
        digest = hashlib.sha384(csr).hexdigest()
        folder = directory / digest[:2] / digest[2:]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cert.pem").write_bytes(pem + b"\n" + pem)
        (folder / "csr.pem").write_bytes(csr)


def list_seconds(work: Path, storage: Path) -> float:
    """Wall time of ``acmems list`` over ``storage``."""
    config = work / "list.ini"
    config.write_text(
        ini.ini(ini.section("account", {"dir": work / "list-account"}), ini.file_storage("file", storage))
    )
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "acmems"), "list", str(config)], capture_output=True, check=True)
    return time.perf_counter() - started


def start_time_and_rss(work: Path, name: str, pebble: Pebble, bind: Bind, storage: Path, account: Path) -> Result:
    """Seconds until acmems answers (the cache index is then read in the background: its time too)."""
    import re

    mgmt, http = free_port(), free_port()
    server = Acmems(work / name, acmems_config(pebble, work, mgmt, http, bind, storage, account), mgmt)
    started = time.perf_counter()
    server.start()
    elapsed = time.perf_counter() - started
    assert server.proc is not None
    wait_for(lambda: "indexed in" in server.log_text(), 60, "the cache index")
    indexed = re.search(r"indexed in ([\d.]+) s", server.log_text())
    time.sleep(1)
    rss = rss_mb(server.proc.pid)
    server.stop()
    return {"start_s": elapsed, "rss_mb": rss, "index_s": float(indexed.group(1)) if indexed else float("nan")}


def bench_acmems(work: Path, bind: Bind, seconds: int, samples: int) -> Result:
    results: Result = {}
    http = free_port()
    pebble = Pebble(work / "pebble", bind.port, http).start()
    mgmt = free_port()
    account = work / "account"
    server = Acmems(
        work / "acmems", acmems_config(pebble, work, mgmt, http, bind, work / "storage", account, WORKERS), mgmt
    ).start()
    assert server.proc is not None
    url = f"http://127.0.0.1:{mgmt}/sign"
    results["workers"] = WORKERS
    try:
        time.sleep(1)
        results["rss_idle_main_mb"] = rss_mb(server.proc.pid)
        children = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True).stdout.split()
        results["rss_idle_worker_mb"] = [rss_mb(int(pid)) for pid in children]
        log("acmems: fresh HTTP-01 certificates, one after another")
        times, failures = sequential(
            url, csr_files(work / "csr-http", [[f"h{i}.example.test"] for i in range(samples)])
        )
        results["fresh_http01"] = {**summary(times), "failures": failures}
        log("acmems: fresh DNS-01 certificates, one after another")
        times, failures = sequential(
            url, csr_files(work / "csr-dns", [[f"d{i}.sub.example2.test"] for i in range(samples)])
        )
        results["fresh_dns01"] = {**summary(times), "failures": failures}
        log("acmems: 50 distinct CSRs at once, then 50 one after another")
        burst = csr_files(work / "csr-50", [[f"c{i}.example.test"] for i in range(50)])
        assert pebble.proc is not None
        acmems_pids = [server.proc.pid] + [int(pid) for pid in children]  # the main process and its workers
        cpu_before = (sum(cpu_seconds(pid) for pid in acmems_pids), cpu_seconds(pebble.proc.pid))
        results["concurrent_50"] = at_once(url, burst)
        results["concurrent_50"]["cpu_s_acmems"] = sum(cpu_seconds(pid) for pid in acmems_pids) - cpu_before[0]
        results["concurrent_50"]["cpu_s_pebble"] = cpu_seconds(pebble.proc.pid) - cpu_before[1]
        started = time.perf_counter()
        times, failures = sequential(url, csr_files(work / "csr-50s", [[f"s{i}.example.test"] for i in range(50)]))
        wall = time.perf_counter() - started
        results["sequential_50"] = {"wall_s": wall, "certs_per_s": len(times) / wall, "failures": failures}
        results["concurrent_speedup"] = wall / results["concurrent_50"]["wall_s"]
        csr = make_csr(["cache.example.test"])[0]
        headers = {"Authentication": hmac_header(csr, HMAC_KEY)}
        (work / "hit.csr").write_bytes(csr)
        status, _ = curl_time(url, work / "hit.csr", headers)
        assert status == 200, status
        script = post_script(work, csr, headers)
        log("acmems: the client side alone: 50 curl processes at once, answered from the cache")
        results["client_floor_50"] = at_once(url, [work / "hit.csr"] * 50, headers)
        floor = results["client_floor_50"]
        c50 = results["concurrent_50"]
        # Even an acmems that cost no CPU at all could not answer 50 at once faster than this:
        # the curl processes and Pebble share the machine's cores.
        bound = max(floor["wall_s"], (c50["cpu_s_pebble"] + c50["cpu_s_curl"]) / (os.cpu_count() or 1))
        results["concurrent_best_possible_s"] = bound
        results["concurrent_speedup_bound"] = results["sequential_50"]["wall_s"] / bound
        for connections in (16, 64):
            log(f"acmems: cache hits, c={connections}")
            results[f"cache_hit_c{connections}"] = wrk(url, connections, seconds, script)
            log(f"acmems: HTTP-01 GET of an unknown token, c={connections}")
            results[f"http01_unknown_c{connections}"] = wrk(
                f"http://127.0.0.1:{http}/.well-known/acme-challenge/unknown-token", connections, seconds
            )
            log(f"acmems: HTTP-01 GET of a known token (a pending authorization), c={connections}")
            results[f"http01_known_c{connections}"] = known_token_load(work, bind, connections, min(seconds, 10))
        results["rss_after_load_mb"] = rss_mb(server.proc.pid)
    finally:
        server.stop()
    log("acmems: one process (workers = 1): idle memory, cache hits c=16")
    mgmt = free_port()
    single = Acmems(
        work / "acmems-one", acmems_config(pebble, work, mgmt, free_port(), bind, work / "storage", account), mgmt
    ).start()
    assert single.proc is not None
    try:
        time.sleep(1)
        results["rss_idle_mb"] = rss_mb(single.proc.pid)
        one_url = f"http://127.0.0.1:{mgmt}/sign"
        status, _ = curl_time(one_url, work / "hit.csr", headers)
        assert status == 200, status
        results["cache_hit_c16_one_process"] = wrk(one_url, 16, seconds, script)
    finally:
        single.stop()
    log("acmems: start-up and memory with an empty cache and with 10,000 certificates")
    empty = work / "empty-store"
    empty.mkdir()
    results["start_empty"] = start_time_and_rss(work, "acmems-empty", pebble, bind, empty, account)
    full = work / "full-store"
    fill_cache(full, 10_000)
    results["start_10k"] = start_time_and_rss(work, "acmems-10k", pebble, bind, full, account)
    results["cache_10k_added_mb"] = results["start_10k"]["rss_mb"] - results["start_empty"]["rss_mb"]
    log("acmems: 100,000 certificates in the original's file layout (an operator moving a large cache over)")
    large = work / "large-store"
    fill_cache(large, 100_000)
    results["start_100k"] = start_time_and_rss(work, "acmems-100k", pebble, bind, large, account)
    results["cache_100k_added_mb"] = results["start_100k"]["rss_mb"] - results["start_empty"]["rss_mb"]
    results["list_100k_s"] = list_seconds(work, large)
    pebble.stop()
    log("acmems: GET /status and /metrics with 10,000 and 100,000 certificates")
    results["status_10k"] = bench_status(work, bind, full, 10_000)
    results["status_100k"] = bench_status(work, bind, large, 100_000)
    return results


def bench_floor(work: Path, bind: Bind, samples: int) -> Result:
    http = free_port()
    pebble = Pebble(work / "pebble-floor", bind.port, http).start()
    floor = AcmeFloor(
        pebble.directory_url, pebble.ca_bundle, http, bind.port, dns.tsig.Key(bind.key_name, bind.key_secret)
    )
    try:
        log("floor: the acme library in-process, 50 ms polling")
        http_times = [floor.issue(make_csr([f"floor{i}.example.test"])[0], "http-01") for i in range(samples)]
        dns_times = [floor.issue(make_csr([f"floor{i}.sub.example2.test"])[0], "dns-01") for i in range(samples)]
    finally:
        floor.close()
        pebble.stop()
    return {"http01": summary(http_times), "dns01": summary(dns_times)}


def macen_venv() -> Path:
    venv = ROOT / ".cache" / "bench" / "macen-venv"
    if not (venv / "bin" / "macen").exists():
        log("installing macen 0.5.0 (the original) in its own venv")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "macen==0.5.0"], check=True)
    return venv


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def bench_macen(work: Path, bind: Bind, seconds: int, samples: int) -> Result:
    if not port_free(5002):
        return {"skipped": "port 5002 is in use: macen answers HTTP-01 only for the CA's port 5002"}
    venv = macen_venv()
    pebble = Pebble(work / "pebble-macen", bind.port, 5002).start()
    mgmt = free_port()
    config = work / "macen.ini"
    config.write_text(
        ini.ini(
            ini.section(
                "account",
                {"acme-server": pebble.directory_url, "dir": work / "macen-account", "accept-terms-of-service": "yes"},
            ),
            ini.mgmt(mgmt, default_verification="http", default_storage="file"),
            ini.http01("http", 5002),
            ini.file_storage("file", work / "macen-storage"),
            *_AUTH_BLOCKS,
        )
    )
    proc = spawn(
        [str(venv / "bin" / "macen"), str(config)],
        work / "macen.log",
        dict(os.environ, ACME_CAFILE=str(pebble.ca_bundle)),
    )
    results: Result = {}
    url = f"http://127.0.0.1:{mgmt}/sign"
    try:
        wait_for(
            lambda: _connects(mgmt),
            60,
            "macen",
            proc,
            work / "macen.log",
        )
        time.sleep(1)
        results["rss_idle_mb"] = rss_mb(proc.pid)
        log("macen: fresh HTTP-01 certificates, one after another")
        times, failures = sequential(url, csr_files(work / "m-http", [[f"m{i}.example.test"] for i in range(samples)]))
        results["fresh_http01"] = {**summary(times), "failures": failures} if times else {"failures": failures}
        log("macen: 50 distinct CSRs at once")
        results["concurrent_50"] = at_once(url, csr_files(work / "m-50", [[f"mc{i}.example.test"] for i in range(50)]))
        csr = make_csr(["cache.example.test"])[0]
        headers = {"Authentication": hmac_header(csr, HMAC_KEY)}
        (work / "m-hit.csr").write_bytes(csr)
        status, _ = curl_time(url, work / "m-hit.csr", headers)
        results["cache_hit_status"] = status
        script = post_script(work / "m-http", csr, headers)
        token = next(
            line.rsplit("/", 1)[-1].split('"')[0]
            for line in pebble.log.read_text().splitlines()
            if "Attempting to validate w/ HTTP" in line and "m0.example.test" in line
        )
        for connections in (16, 64):
            log(f"macen: cache hits, c={connections}")
            results[f"cache_hit_c{connections}"] = wrk(url, connections, seconds, script)
            log(f"macen: HTTP-01 GET of a known and an unknown token, c={connections}")
            # macen keys challenges by Host without ":5002" and never forgets them
            results[f"http01_known_c{connections}"] = wrk(
                f"http://127.0.0.1:5002/.well-known/acme-challenge/{token}",
                connections,
                seconds,
                headers={"Host": "m0.example.test:5002"},
            )
            results[f"http01_unknown_c{connections}"] = wrk(
                "http://127.0.0.1:5002/.well-known/acme-challenge/unknown-token",
                connections,
                seconds,
                headers={"Host": "m0.example.test:5002"},
            )
        results["rss_after_load_mb"] = rss_mb(proc.pid)
        results["dns01"] = "not measured: macen 0.5.0 sends unsigned updates only and cannot use a TSIG-only zone"
    finally:
        _stop(proc)
        pebble.stop()
    return results


def _attempt(measure: Callable[[], Result]) -> Result:
    try:
        return measure()
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or b"")[-300:]
        return {"error": tail.decode(errors="replace") if isinstance(tail, bytes) else str(tail)}


def bench_certbot_lego(work: Path, bind: Bind, samples: int) -> Result:
    results: Result = {}
    http = free_port()
    pebble = Pebble(work / "pebble-alt", bind.port, http).start()
    env = dict(os.environ, REQUESTS_CA_BUNDLE=str(pebble.ca_bundle), LEGO_CA_CERTIFICATES=str(pebble.ca_bundle))
    try:
        if shutil.which("certbot"):
            base = [
                "certbot",
                "certonly",
                "--non-interactive",
                "--agree-tos",
                "--register-unsafely-without-email",
                "--server",
                pebble.directory_url,
                "--standalone",
                "--http-01-port",
                str(http),
                "--http-01-address",
                "127.0.0.1",
                "--config-dir",
                str(work / "cb"),
                "--work-dir",
                str(work / "cb"),
                "--logs-dir",
                str(work / "cb"),
            ]

            def certbot(index: int) -> float:
                csr = work / f"cb-{index}.csr"
                csr.write_bytes(make_csr([f"cb{index}.example.test"])[0])
                out = work / f"cb-out-{index}"
                started = time.perf_counter()
                subprocess.run(
                    [
                        *base,
                        "--csr",
                        str(csr),
                        "--cert-path",
                        f"{out}.crt",
                        "--chain-path",
                        f"{out}.chain",
                        "--fullchain-path",
                        f"{out}.full",
                    ],
                    env=env,
                    check=True,
                    capture_output=True,
                )
                return time.perf_counter() - started

            log("certbot: standalone HTTP-01 (first run registers, not counted)")
            results["certbot_http01"] = _attempt(
                lambda: (certbot(1000), summary([certbot(i) for i in range(samples)]))[1]
            )
        if shutil.which("lego"):

            def lego(index: int, kind: str) -> float:
                zone = "example.test" if kind == "http" else "sub.example2.test"
                csr = work / f"lego-{kind}-{index}.csr"
                csr.write_bytes(make_csr([f"lego{index}.{zone}"])[0])
                command = [
                    "lego",
                    "--server",
                    pebble.directory_url,
                    "--accept-tos",
                    "--email",
                    "bench@example.test",
                    "--path",
                    str(work / "lego"),
                    "--csr",
                    str(csr),
                ]
                lego_env = env
                if kind == "http":
                    command += ["--http", "--http.port", f"127.0.0.1:{http}"]
                else:
                    command += ["--dns", "rfc2136", "--dns.resolvers", f"127.0.0.1:{bind.port}", "--dns.disable-cp"]
                    lego_env = dict(
                        env,
                        RFC2136_NAMESERVER=f"127.0.0.1:{bind.port}",
                        RFC2136_TSIG_KEY=bind.key_name,
                        RFC2136_TSIG_SECRET=bind.key_secret,
                        RFC2136_TSIG_ALGORITHM="hmac-sha256.",
                    )
                started = time.perf_counter()
                subprocess.run([*command, "run"], env=lego_env, check=True, capture_output=True)
                return time.perf_counter() - started

            log("lego: HTTP-01 (first run registers, not counted)")
            results["lego_http01"] = _attempt(
                lambda: (lego(1000, "http"), summary([lego(i, "http") for i in range(samples)]))[1]
            )
            log("lego: DNS-01 by RFC 2136 with TSIG")
            results["lego_dns01"] = _attempt(lambda: summary([lego(i, "dns") for i in range(samples)]))
    finally:
        pebble.stop()
    return results


def bench_nginx_static(work: Path, seconds: int) -> Result:
    d = work / "nginx-static"
    d.mkdir()
    (d / "www").mkdir()
    (d / "www" / "chain.pem").write_bytes(b"x" * 2400)
    port = free_port()
    temp = "\n".join(f"  {k}_temp_path {d}/{k}_temp;" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (d / "nginx.conf").write_text(f"""pid {d}/nginx.pid; error_log {d}/error.log; worker_processes 1;
events {{ worker_connections 1024; }}
http {{ {temp} access_log off; server {{ listen 127.0.0.1:{port}; root {d}/www; }} }}
""")
    proc = spawn(["nginx", "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"], d / "stdout.log")
    try:
        wait_for(lambda: _connects(port), 10, "nginx")
        return {f"c{c}": wrk(f"http://127.0.0.1:{port}/chain.pem", c, seconds) for c in (16, 64)}
    finally:
        _stop(proc)


def table(r: Result) -> str:
    a, m, f, alt, ng = r["acmems"], r.get("macen", {}), r["floor"], r.get("alternatives", {}), r.get("nginx", {})

    def ms(block: Result | None, key: str = "median_ms") -> str:
        return f"{block[key]:.0f} ms" if block and key in block else "n/a"

    def rps(block: Result | None) -> str:
        return f"{block['rps']:.0f}/s" if block and "rps" in block else "n/a"

    def lat(block: Result | None) -> str:
        if not block or "rps" not in block:
            return "n/a"
        return f"p50 {block['p50_ms']:.1f} / p99 {block['p99_ms']:.1f} ms, non-2xx {block['non_2xx']:.0f}"

    def ratio(x: Result | None, y: Result | None) -> str:
        return f"{x['rps'] / y['rps']:.1f}x" if x and y and "rps" in x and "rps" in y and y["rps"] else "n/a"

    rows = [
        "| measure | acmems | floor / ceiling | macen 0.5.0 | certbot 2.1 | lego 4.9 | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    http_ratio = a["fresh_http01"]["median_ms"] / f["http01"]["median_ms"]
    dns_ratio = a["fresh_dns01"]["median_ms"] / f["http01"]["median_ms"]
    rows.append(
        f"| fresh HTTP-01, median (p90) | {ms(a['fresh_http01'])} ({ms(a['fresh_http01'], 'p90_ms')}) | "
        f"acme lib {ms(f['http01'])} | {ms(m.get('fresh_http01'))} | {ms(alt.get('certbot_http01'))} | "
        f"{ms(alt.get('lego_http01'))} | <= 1.5x floor | {http_ratio:.2f}x {'yes' if http_ratio <= 1.5 else 'NO'} |"
    )
    rows.append(
        f"| fresh DNS-01 (TSIG), median (p90) | {ms(a['fresh_dns01'])} ({ms(a['fresh_dns01'], 'p90_ms')}) | "
        f"acme lib {ms(f['dns01'])} | n/a (no TSIG) | n/a | {ms(alt.get('lego_dns01'))} | <= 2x HTTP-01 floor | "
        f"{dns_ratio:.2f}x {'yes' if dns_ratio <= 2 else 'NO'} |"
    )
    c50, m50 = a["concurrent_50"], m.get("concurrent_50")
    rows.append(
        f"| 50 CSRs at once: wall, certs/s, failures (CPU s acmems / Pebble) | {c50['wall_s']:.2f} s, "
        f"{c50['certs_per_s']:.1f}/s, {c50['failures']} ({c50.get('cpu_s_acmems', 0):.2f} / "
        f"{c50.get('cpu_s_pebble', 0):.2f}) | | "
        + (f"{m50['wall_s']:.2f} s, {m50['certs_per_s']:.1f}/s, {m50['failures']}" if m50 else "n/a")
        + " | n/a | n/a | all succeed | "
        f"{'yes' if c50['failures'] == 0 else 'NO'} |"
    )
    speed = a["concurrent_speedup"]
    rows.append(
        f"| 50 one after another: wall | {a['sequential_50']['wall_s']:.2f} s | | | | | >= 8x slower than at "
        f"once | {speed:.1f}x {'yes' if speed >= 8 else 'NO'} |"
    )
    if "concurrent_speedup_bound" in a:
        floor = a["client_floor_50"]
        rows.append(
            f"| 50 at once, the most any server could do here: 50 curls alone (cache hits), wall / CPU; "
            f"(Pebble + curl CPU) / cores | {floor['wall_s']:.2f} s / {floor['cpu_s_curl']:.2f} s; "
            f"{a['concurrent_best_possible_s']:.2f} s | | | | | | at most "
            f"{a['concurrent_speedup_bound']:.1f}x |"
        )
    for c in (16, 64):
        hit, mhit = a[f"cache_hit_c{c}"], m.get(f"cache_hit_c{c}")
        ok = c != 16 or (
            mhit
            and hit["rps"] >= 10 * mhit["rps"]
            and hit["p99_ms"] <= 20
            and hit["non_2xx"] == 0
            and hit["socket_errors"] == 0
        )
        target = ">= 10x macen, p99 <= 20 ms, 0 errors" if c == 16 else "(reported)"
        rows.append(
            f"| cache hit c={c}, workers = {a.get('workers', 1)}: req/s | {rps(hit)} ({lat(hit)}) | nginx static "
            f"{rps(ng.get(f'c{c}'))} | {rps(mhit)} ({lat(mhit)}) | | | {target} | {ratio(hit, mhit)} "
            f"{'yes' if ok else 'NO'} |"
        )
        one = a.get("cache_hit_c16_one_process")
        if c == 16 and one:
            rows.append(
                f"| cache hit c=16, one process (workers = 1) | {rps(one)} ({lat(one)}) | | {rps(mhit)} | | | "
                f"(reported) | {ratio(one, mhit)} |"
            )
    for kind in ("known", "unknown"):
        for c in (16, 64):
            get, mget = a[f"http01_{kind}_c{c}"], m.get(f"http01_{kind}_c{c}")
            ok = bool(mget) and get["rps"] >= 10 * mget["rps"]
            rows.append(
                f"| HTTP-01 GET {kind} token c={c} | {rps(get)} ({lat(get)}) | nginx static "
                f"{rps(ng.get(f'c{c}'))} | {rps(mget)} | | | >= 10x macen | {ratio(get, mget)} "
                f"{'yes' if ok else 'NO'} |"
            )
    idle_ok = m.get("rss_idle_mb") is not None and a["rss_idle_mb"] <= m["rss_idle_mb"]
    workers_rss = ", ".join(f"{x:.0f}" for x in a.get("rss_idle_worker_mb", []))
    rows.append(
        f"| RSS idle, one process / after loads (main process; each worker idle: {workers_rss or '-'} MiB) | "
        f"{a['rss_idle_mb']:.0f} / {a['rss_after_load_mb']:.0f} MiB | | "
        f"{m.get('rss_idle_mb', float('nan')):.0f} / {m.get('rss_after_load_mb', float('nan')):.0f} MiB | | | "
        f"idle <= macen | {'yes' if idle_ok else 'NO'} |"
    )
    added, start = r["acmems"]["cache_10k_added_mb"], r["acmems"]["start_10k"]["start_s"]
    rows.append(
        f"| 10,000 cached certificates: RSS added, start-up (index read after) | +{added:.1f} MiB, {start:.2f} s "
        f"({r['acmems']['start_10k'].get('index_s', float('nan')):.2f} s; empty: "
        f"{r['acmems']['start_empty']['start_s']:.2f} s) | | | | | <= 60 MB, <= 1 s | "
        f"{'yes' if added <= 60 and start <= 1 else 'NO'} |"
    )
    big = r["acmems"].get("start_100k")
    if big is not None:
        added, listed = r["acmems"]["cache_100k_added_mb"], r["acmems"]["list_100k_s"]
        rows.append(
            f"| 100,000 cached certificates: start-up, index read, RSS added, `acmems list` | {big['start_s']:.2f} s, "
            f"{big['index_s']:.1f} s, +{added:.0f} MiB, {listed:.1f} s | | | | | answers at once, index <= 10 s, "
            f"< 100 MiB, list <= 3 s | {'yes' if big['index_s'] <= 10 and added < 100 and listed <= 3 else 'NO'} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="length of each load run (10)")
    parser.add_argument("--samples", type=int, default=20, help="fresh certificates per measure (20)")
    parser.add_argument("--alt-samples", type=int, default=5, help="certbot/lego runs per measure (5)")
    parser.add_argument("--skip-alternatives", action="store_true", help="acmems, floor and nginx only")
    args = parser.parse_args(argv)
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            print(f"bench: {tool} is missing; run make bench (it installs it)", file=sys.stderr)
            return 1
    work = Path(tempfile.mkdtemp(prefix="acmems-bench-"))
    bind = Bind(work / "bind").start()
    results: Result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "settings": vars(args),
    }
    try:
        results["floor"] = bench_floor(work, bind, args.samples)
        results["acmems"] = bench_acmems(work, bind, args.seconds, args.samples)
        results["cluster"] = bench_cluster(work, bind, args.seconds, args.samples)
        results["nginx"] = bench_nginx_static(work, args.seconds)
        results["acme_server"] = bench_acme_server(work, bind, args.alt_samples)
        if not args.skip_alternatives:
            results["macen"] = bench_macen(work, bind, args.seconds, args.samples)
            results["alternatives"] = bench_certbot_lego(work, bind, args.alt_samples)
    finally:
        bind.stop()
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{datetime.date.today().isoformat()}.json"
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(table(results))
    print("\n" + cluster_table(results["cluster"]))
    print("\n" + acme_table(results["acme_server"]))
    print(f"\n(results: {out.relative_to(ROOT)}; work files: {work})")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
