"""Helpers for the benchmarks: wrk runs and their figures, curl timings, process memory."""

from __future__ import annotations

import re
import statistics
import subprocess
from pathlib import Path

from tests.conftest import make_csr
from tests.realservices import tool

__all__ = ["cpu_seconds", "csr_files", "curl_time", "percentile", "rss_mb", "sequential", "summary", "wrk"]


def _seconds(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if match is None:
        raise ValueError(value)
    return float(match.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[match.group(2)]


def wrk(
    url: str, connections: int, seconds: int, script: Path | None = None, headers: dict[str, str] | None = None
) -> dict[str, float]:
    """Run wrk (2 threads, its own process); requests/s, p50/p99 latency in ms, non-2xx and socket errors."""
    command = [tool("wrk"), "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if script is not None:
        command += ["-s", str(script)]
    for key, value in (headers or {}).items():
        command += ["-H", f"{key}: {value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    result = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _seconds(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)) * 1000,  # type: ignore[union-attr]
        "p99_ms": _seconds(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)) * 1000,  # type: ignore[union-attr]
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "non_2xx": 0.0,
        "socket_errors": 0.0,
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        result["non_2xx"] = float(non_2xx.group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        result["socket_errors"] = float(sum(int(g) for g in errors.groups()))
    return result


def post_script(directory: Path, body: bytes, headers: dict[str, str]) -> Path:
    """A wrk Lua script that POSTs ``body`` with ``headers``."""
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{body.decode()}]==]"]
    lines += [f'wrk.headers["{k}"] = [==[{v}]==]' for k, v in headers.items()]
    path = directory / "post.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def curl_time(url: str, csr: Path, headers: dict[str, str] | None = None) -> tuple[int, float]:
    """POST a CSR file with curl; (status, seconds as curl measured them)."""
    command = [
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{time_total}",
        "--data-binary",
        f"@{csr}",
        "--max-time",
        "120",
    ]
    for key, value in (headers or {}).items():
        command += ["-H", f"{key}: {value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=False).stdout.split()
    return int(out[0]) if out else 0, float(out[1]) if len(out) > 1 else 0.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    """median and p90 in ms, and how many."""
    return {
        "median_ms": statistics.median(values) * 1000,
        "p90_ms": percentile(values, 0.9) * 1000,
        "n": float(len(values)),
    }


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, in seconds."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def csr_files(directory: Path, names: list[list[str]]) -> list[Path]:
    """Pre-generated EC P-256 CSRs (key generation is not timed)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, request in enumerate(names):
        path = directory / f"{index}.csr"
        path.write_bytes(make_csr(request)[0])
        paths.append(path)
    return paths


def sequential(url: str, csrs: list[Path], headers: dict[str, str] | None = None) -> tuple[list[float], int]:
    times, failures = [], 0
    for csr in csrs:
        status, seconds = curl_time(url, csr, headers)
        if status == 200:
            times.append(seconds)
        else:
            failures += 1
    return times, failures
