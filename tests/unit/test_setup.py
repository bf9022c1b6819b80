"""`make test` installs every program the tests run (scripts/setup-system.sh), so a fresh machine
passes the README's command."""

from __future__ import annotations

import re
from pathlib import Path

from tests.realservices import TOOLS

ROOT = Path(__file__).resolve().parents[2]


def test_setup_installs_the_package_of_every_tool_the_tests_run() -> None:
    script = (ROOT / "scripts" / "setup-system.sh").read_text()
    match = re.search(r'^pkgs="([^"]+)"', script, re.MULTILINE)
    assert match is not None
    installed = set(match.group(1).split())
    assert {package for package in TOOLS.values()} <= installed


def test_make_test_runs_the_system_setup_first() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: setup lint$", makefile, re.MULTILINE)
    assert re.search(r"^setup: system venv$", makefile, re.MULTILINE)
    assert "scripts/setup-system.sh" in makefile
