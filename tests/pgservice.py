"""A real PostgreSQL 15 (Debian's postgresql-15) for tests, the demo and the benchmarks.

initdb and the server run as the ``postgres`` user (initdb refuses root) in a folder made directly
in /tmp (pytest's 0700 folders are closed to that user). TCP on 127.0.0.1 asks for a password
(scram-sha-256), as a real installation would; the test's own administration uses the Unix socket.
Stopped by SIGINT (fast shutdown: SIGTERM waits for pooled connections).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests import waits
from tests.realservices import ServiceError, free_port, spawn, tool, wait_for

__all__ = ["ADMIN", "PASSWORD", "Postgres", "Standby"]

ADMIN = "postgres"
PASSWORD = "acmems-test-password"  # of the role ``acmems``


class Postgres:
    """One PostgreSQL server with a database ``acmems`` owned by the role ``acmems``."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="acmems-pg-", dir="/tmp"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "postgres.log"
        entry = pwd.getpwnam("postgres")
        self._uid, self._gid = entry.pw_uid, entry.pw_gid
        os.chown(self.dir, self._uid, self._gid)

    def _as_postgres(self, *command: str) -> list[str]:
        return ["setpriv", f"--reuid={self._uid}", f"--regid={self._gid}", "--init-groups", *command]

    @property
    def dsn(self) -> str:
        """How acmems connects (TCP, role acmems; the password comes from a file)."""
        return f"postgresql://acmems@127.0.0.1:{self.port}/acmems"

    def start(self) -> Postgres:
        data = self.dir / "data"
        if not data.exists():
            pwfile = self.dir / "admin-password"
            pwfile.write_text("admin\n")
            os.chown(pwfile, self._uid, self._gid)
            subprocess.run(
                self._as_postgres(
                    tool("initdb"), "-D", str(data), "-U", ADMIN, "--no-sync", "--auth-local=trust",
                    "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                ),
                check=True, capture_output=True,
            )  # fmt: skip
            self._spawn()
            self.psql(f"CREATE ROLE acmems LOGIN PASSWORD {_literal(PASSWORD)}", database="postgres")
            self.psql("CREATE DATABASE acmems OWNER acmems", database="postgres")
        else:
            self._spawn()
        return self

    def _spawn(self, data: Path | None = None) -> None:
        log = self.log
        if not log.exists():
            log.touch()
        os.chown(log, self._uid, self._gid)
        self.proc = spawn(
            self._as_postgres(
                tool("postgres"), "-D", str(data or self.dir / "data"), "-k", str(self.dir), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200",
            ),
            log,
        )  # fmt: skip
        wait_for(self._ready, waits.SERVICE_START, "postgres", self.proc, log)

    def _ready(self) -> bool:
        probe = [tool("pg_isready"), "-q", "-h", str(self.dir), "-p", str(self.port), "-U", ADMIN, "-d", "postgres"]
        return subprocess.run(probe, check=False).returncode == 0

    def psql(self, statement: str, database: str = "acmems") -> str:
        """Run one statement as the administrator; its unaligned output."""
        done = subprocess.run(
            [tool("psql"), "-h", str(self.dir), "-p", str(self.port), "-U", ADMIN, "-d", database,
             "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", statement],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise ServiceError(f"psql {statement!r}: {done.stderr.strip()}")
        return done.stdout.strip()

    def stop(self) -> None:
        """Fast shutdown (clients are disconnected at once)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(20)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Standby(Postgres):
    """A streaming standby of ``primary`` (pg_basebackup -R: standby.signal and primary_conninfo),
    read-only until :meth:`promote`."""

    _REPLICATION = "acmems-test-replication"

    def __init__(self, primary: Postgres) -> None:
        super().__init__()
        self.primary = primary

    def start(self) -> Standby:
        data = self.dir / "data"
        if not data.exists():
            self.primary.psql(
                f"CREATE ROLE repl REPLICATION LOGIN PASSWORD {_literal(self._REPLICATION)}", database="postgres"
            )
            subprocess.run(
                self._as_postgres(
                    "env", f"PGPASSWORD={self._REPLICATION}", tool("pg_basebackup"), "-h", "127.0.0.1",
                    "-p", str(self.primary.port), "-U", "repl", "-D", str(data), "-R", "-X", "stream",
                    "-c", "fast", "-C", "-S", f"standby_{self.port}", "--no-sync",
                ),
                check=True, capture_output=True,
            )  # fmt: skip
        self._spawn()
        return self

    def in_recovery(self) -> bool:
        return self.psql("SELECT pg_is_in_recovery()", database="postgres") == "t"

    def promote(self) -> None:
        """Make it the primary (pg_promote waits until it is)."""
        assert self.psql("SELECT pg_promote()", database="postgres") == "t"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
