"""``[cluster]`` and ``type = database``: what the configuration accepts and refuses, and what
``acmems check`` shows of it (never the password)."""

from __future__ import annotations

from pathlib import Path

import pytest

from acmems.cluster import masked
from acmems.config import settings_from_sources
from acmems.config.describe import describe_settings
from acmems.core.settings import DatabaseStorage, Settings
from acmems.errors import ConfigError

BASE = "[account]\ndir = /x\n"
SHARED = '[storage "shared"]\ntype = database\nrenew-within = 10\n'


def load(text: str) -> Settings:
    return settings_from_sources([("test.ini", text)])


def error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(text)
    return info.value.message


def test_a_cluster_with_a_database_storage(tmp_path: Path) -> None:
    secret = tmp_path / "db-password"
    secret.write_text("s3cret-pw\n\n")
    settings = load(
        BASE + f"[cluster]\ndatabase = postgresql://acmems@db.example.org/acmems?sslmode=verify-full\n"
        f"password-file = {secret}\nname = acmems-a\n" + SHARED
    )
    assert settings.cluster is not None
    assert settings.cluster.password == "s3cret-pw"  # trailing whitespace is not part of it
    assert settings.cluster.name == "acmems-a"
    assert settings.storages["shared"] == DatabaseStorage("shared", 10.0)
    assert settings.default_storage == "shared"
    text = describe_settings(settings)
    assert "s3cret-pw" not in text and "password-file = ********" in text
    assert "host=db.example.org dbname=acmems user=acmems sslmode=verify-full" in text
    assert "s3cret-pw" not in repr(settings)


def test_the_name_defaults_to_the_host_name() -> None:
    import socket

    settings = load(BASE + "[cluster]\ndatabase = host=db dbname=acmems\n")
    assert settings.cluster is not None and settings.cluster.name == socket.gethostname()


def test_a_database_storage_without_a_cluster_names_its_line() -> None:
    message = error(BASE + "\n" + SHARED)
    assert message.startswith('test.ini:5: [storage "shared"] type: type = database keeps certificates')
    assert "add a [cluster] section" in message


def test_a_cluster_with_only_file_storages_warns_that_certificates_stay_per_instance() -> None:
    settings = load(BASE + '[cluster]\ndatabase = postgresql:///acmems\n[storage "f"]\ntype = file\ndirectory = /c\n')
    assert any("certificates are kept per instance" in w for w in settings.warnings)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("name = x\n", "needs 'database'"),
        ("database = \n", "is empty"),
        ("database = host=db port\n", "is not a libpq connection string"),
        ("database = postgresql://a:pw@h/d\npassword-file = /nonexistent/pw\n", "cannot read /nonexistent/pw"),
        ("database = postgresql:///d\nname = two words\n", "is not a name"),
    ],
)
def test_cluster_errors_say_what_to_fix(keys: str, expected: str) -> None:
    message = error(BASE + "[cluster]\n" + keys)
    assert expected in message
    assert "pw@" not in message  # the value, which may hold a password, is not repeated


def test_an_empty_password_file_stops_the_start_naming_it(tmp_path: Path) -> None:
    empty = tmp_path / "pw"
    empty.write_text("\n")
    assert f"{empty} is empty" in error(BASE + f"[cluster]\ndatabase = postgresql:///d\npassword-file = {empty}\n")


def test_cluster_takes_no_name() -> None:
    assert "[cluster] takes no name" in error(BASE + '[cluster "x"]\ndatabase = postgresql:///d\n')


@pytest.mark.parametrize(
    ("database", "shown"),
    [
        ("postgresql://u:topsecret@h:5433/db", "host=h port=5433 dbname=db user=u password=***"),
        ("host=h dbname=db password=topsecret sslmode=verify-full sslkey=/k.pem", "sslmode=verify-full password=***"),
        ("postgresql:///db", "dbname=db"),
    ],
)
def test_masked_shows_where_but_never_a_secret(database: str, shown: str) -> None:
    text = masked(database)
    assert shown in text
    assert "topsecret" not in text and "/k.pem" not in text
