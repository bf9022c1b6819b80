"""contrib/prometheus/acmems-alerts.yml: valid for Prometheus (promtool from Debian's prometheus
package), its unit tests pass, and every acmems series it uses is one a real acmems exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import curl_post, make_csr
from tests.realservices import Acmems, tool

pytestmark = pytest.mark.integration
RULES = Path(__file__).resolve().parents[2] / "contrib" / "prometheus"


def test_promtool_checks_and_tests_the_rules() -> None:
    promtool = tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", "acmems-alerts.yml"], cwd=RULES, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", "acmems-alerts.test.yml"], cwd=RULES, capture_output=True, text=True, timeout=120
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_series_the_rules_use_is_exported(acmems: Acmems) -> None:
    assert curl_post(f"http://127.0.0.1:{acmems.mgmt_port}/sign", make_csr(["rules.example.test"])[0])[0] == 200
    exported = curl_post(f"http://127.0.0.1:{acmems.mgmt_port}/metrics", b"", extra=["-X", "GET"])[1].decode()
    names = {line.split("{")[0].split()[0] for line in exported.splitlines() if line and not line.startswith("#")}
    used = set(re.findall(r"\bacmems_[a-z_]+", (RULES / "acmems-alerts.yml").read_text()))
    assert used and used <= names, sorted(used - names)
