"""The Backend seam (acmems.backends): make_backend alone looks at [cluster]; the files backend
hands out one object per file and keeps nothing it cannot keep; one acmems never loads psycopg."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from acmems.backends import Role, make_backend
from acmems.backends.files import FileBackend
from acmems.challenges.http01 import Http01Solver, looks_like_token
from acmems.config import settings_from_sources
from acmems.core.pause_scope import ACCOUNT
from acmems.core.settings import DatabaseStorage, FileStorage, NoneStorage
from acmems.errors import ConfigError
from acmems.storage.file import FileCache
from acmems.storage.none import NoCache

FILES = '[account]\ndir = {dir}\n[storage "certs"]\ntype = file\ndirectory = {dir}/certs\n'
CLUSTER = (
    FILES
    + "[cluster]\ndatabase = postgresql://acmems@127.0.0.1:1/acmems\nname = one\n"
    + ('[storage "shared"]\ntype = database\n')
)


def test_without_a_cluster_the_backend_is_files(tmp_path: Path) -> None:
    settings = settings_from_sources([("t.ini", FILES.format(dir=tmp_path))])
    assert isinstance(make_backend(settings), FileBackend)


def test_with_a_cluster_the_backend_is_postgres_and_names_the_instance(tmp_path: Path) -> None:
    from acmems.backends.postgres import PostgresBackend

    settings = settings_from_sources([("t.ini", CLUSTER.format(dir=tmp_path))])
    backend = make_backend(settings, Role.COMMAND)
    assert isinstance(backend, PostgresBackend)
    assert backend.label == " instance=one"
    assert isinstance(backend.store(settings.storages["certs"]), FileCache)  # each instance its own files


def test_the_files_backend_hands_out_one_journal_and_rate_log_per_directory(tmp_path: Path) -> None:
    backend = FileBackend()
    assert backend.dns_journal(tmp_path / "a") is backend.dns_journal(tmp_path / "a")
    assert backend.dns_journal(tmp_path / "a") is not backend.dns_journal(tmp_path / "b")
    assert backend.rate_log(tmp_path / "a") is backend.rate_log(tmp_path / "a")
    assert backend.label == "" and backend.problems() == [] and backend.account_check("https://ca") is None


def test_the_files_backend_stores_by_type_and_refuses_a_database_storage(tmp_path: Path) -> None:
    backend = FileBackend()
    file_store = backend.store(FileStorage("certs", tmp_path))
    none_store = backend.store(NoneStorage("none"))
    assert isinstance(file_store, FileCache) and file_store.keeps_certificates
    assert isinstance(none_store, NoCache) and not none_store.keeps_certificates
    with pytest.raises(ConfigError, match=r"type = database needs a \[cluster\] section"):
        backend.store(DatabaseStorage("shared"))


def test_one_acmems_shares_no_tokens_and_no_pauses() -> None:
    backend = FileBackend()

    async def scenario() -> None:
        solver = Http01Solver("web", backend.http01_tokens())
        token = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
        await solver.present("www.example.org", token, f"{token}.thumb")
        assert await solver.lookup(token) == f"{token}.thumb"
        await solver.cleanup("www.example.org", token, f"{token}.thumb")
        assert await solver.lookup(token) is None
        pauses = backend.ca_pauses()
        await pauses.hold("https://ca", ACCOUNT, 120, "rateLimited")
        await pauses.check("https://ca", [ACCOUNT])  # no CaError: this process's own pauses are the issuer's
        assert await backend.status() is None

    asyncio.run(scenario())


def test_one_acmems_with_files_never_loads_psycopg(tmp_path: Path) -> None:
    config = tmp_path / "acmems.ini"
    config.write_text(FILES.format(dir=tmp_path))
    code = (
        "import sys\n"
        "from acmems.config import load_settings\n"
        "from acmems.server import Server\n"
        "from acmems.cli.main import _parser\n"
        f"server = Server(load_settings([{str(config)!r}]))\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg_pool', 'acmems'))\n"
        "print('\\n'.join(loaded))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "acmems.server" in loaded  # the server was built
    assert not [m for m in loaded if m.startswith(("psycopg", "acmems.cluster", "acmems.backends.postgres"))]


@pytest.mark.parametrize(
    ("token", "shaped"),
    [
        ("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", True),  # Let's Encrypt's and Pebble's: 43
        ("A" * 22, True),  # 128 bits, the least RFC 8555 allows
        ("A" * 21, False),
        ("A" * 257, False),
        ("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ+PCt92wr/oA", False),  # base64, not base64url
        ("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA=", False),  # padding
        ("../../etc/passwd-aaaaaaaaaaaaaaaaaaaaaa", False),
        ("", False),
    ],
)
def test_only_what_is_shaped_like_an_acme_token_is_looked_up(token: str, shaped: bool) -> None:
    assert looks_like_token(token) is shaped
