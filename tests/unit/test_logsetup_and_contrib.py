"""[logging] destinations and formats; the systemd units in contrib/ as systemd reads them."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from acmems.core.settings import LoggingSettings
from acmems.logsetup import setup_logging
from tests.realservices import tool

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_lines_to_a_file(tmp_path: Path, restore_logging: None) -> None:
    target = tmp_path / "logs" / "acmems.log"
    setup_logging(LoggingSettings(level="warning", destination=str(target), format="json"))
    logging.getLogger("acmems.sign").info("not written at level warning")
    logging.getLogger("acmems.sign").warning("sign peer=%s status=%d", "192.0.2.1", 403)
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert lines == [
        {
            "time": lines[0]["time"],
            "level": "warning",
            "logger": "acmems.sign",
            "message": "sign peer=192.0.2.1 status=403",
        }
    ]


def test_text_and_custom_format(tmp_path: Path, restore_logging: None) -> None:
    target = tmp_path / "acmems.log"
    setup_logging(LoggingSettings(level="debug", destination=str(target), format="%(levelname)s|%(message)s"))
    logging.getLogger("acmems").debug("hello")
    assert target.read_text() == "DEBUG|hello\n"


@pytest.mark.parametrize("unit", ["acmems.service", "acmems-client@.service", "acmems-client@.timer"])
def test_systemd_units_verify(unit: str, tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    text = (ROOT / "contrib" / "systemd" / unit).read_text()
    # point ExecStart at programs that exist on this machine
    text = text.replace("/opt/acmems/bin/acmems", str(Path(sys.executable).parent / "acmems"))
    text = text.replace("/usr/local/bin/acmems-client", str(ROOT / "contrib" / "acmems-client"))
    target = tmp_path / unit.replace("@", "@test")
    target.write_text(text)
    if unit.endswith(".timer"):
        (tmp_path / "acmems-client@test.service").write_text(
            (ROOT / "contrib" / "systemd" / "acmems-client@.service")
            .read_text()
            .replace("/usr/local/bin/acmems-client", str(ROOT / "contrib" / "acmems-client"))
        )
    result = subprocess.run([analyze, "verify", str(target)], capture_output=True, text=True, check=False)
    # systemd-analyze exits 0 even for unknown keys: any complaint about our file counts
    problems = [line for line in (result.stdout + result.stderr).splitlines() if str(tmp_path) in line]
    assert result.returncode == 0 and problems == [], result.stdout + result.stderr
