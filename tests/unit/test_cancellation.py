"""Cancellation passes through the CA client: a task cancelled while a synchronous ``acme`` call
runs in a worker thread ends cancelled (not as a 500), and the renewer stops when cancelled."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from acmems.ca.session import AcmeCa
from acmems.challenges import ChallengeSolver
from acmems.core.settings import AccountSettings, LoggingSettings, MgmtSettings, Settings
from acmems.errors import AcmemsError
from acmems.issuance.issuer import Issuer
from acmems.issuance.renewer import Renewer
from acmems.storage import CertificateStore
from acmems.storage.none import NoCache


@dataclass(frozen=True)
class SilentCa:
    """A directory URL whose server accepts connections and never answers; ``asked`` is set once a
    request has arrived."""

    url: str
    asked: threading.Event


@pytest.fixture
def silent_ca() -> Iterator[SilentCa]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()
    asked = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                connection = server.accept()[0]
            except TimeoutError:
                continue
            held.append(connection)
            connection.settimeout(10)
            if connection.recv(1):  # the first byte of the request
                asked.set()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield SilentCa(f"http://127.0.0.1:{server.getsockname()[1]}/dir", asked)
    stop.set()
    thread.join()
    for sock in held:
        sock.close()
    server.close()


def _ca(url: str, directory: Path) -> AcmeCa:
    return AcmeCa(AccountSettings(acme_server=url, dir=directory, accept_terms_of_service=("yes",)))


async def _cancel_while_fetching(silent: SilentCa, task: asyncio.Task[None]) -> None:
    # the directory request is under way in a worker thread: the silent server has it
    assert await asyncio.to_thread(silent.asked.wait, 10)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_cancelling_start_ready_during_a_directory_fetch_ends_cancelled(silent_ca: SilentCa, tmp_path: Path) -> None:
    async def scenario() -> None:
        ca = _ca(silent_ca.url, tmp_path)
        ca.load_or_create_key(create=True)
        try:
            await _cancel_while_fetching(silent_ca, asyncio.create_task(ca.start_ready()))
        finally:
            ca.close()

    asyncio.run(scenario())


class _Runtime:
    def __init__(self, ca: AcmeCa, caches: dict[str, CertificateStore]) -> None:
        self.ca = ca
        self.cas = {"default": ca}
        self.caches = caches
        self.solvers: dict[str, ChallengeSolver] = {}
        self.issuer = Issuer(ca, self.solvers, caches)
        self.settings = Settings(
            account=ca.settings,
            mgmt=MgmtSettings(listeners=(), renewal_interval=0.01),
            verifications={},
            storages={},
            auth_blocks=(),
            logging=LoggingSettings(),
            default_verification=None,
            default_storage=None,
        )


class _OneCertificate(NoCache):
    """A store that says it holds a certificate, so the renewer goes on to ask the CA."""

    def count(self) -> int:
        return 1


def test_a_renewer_cancelled_during_a_directory_fetch_stops(silent_ca: SilentCa, tmp_path: Path) -> None:
    async def scenario() -> None:
        ca = _ca(silent_ca.url, tmp_path)
        ca.load_or_create_key(create=True)
        runtime = _Runtime(ca, {"file": _OneCertificate("file")})
        renewer = Renewer(lambda: runtime)
        try:
            await _cancel_while_fetching(silent_ca, asyncio.create_task(renewer.run()))
        finally:
            ca.close()

    asyncio.run(scenario())


def test_a_failure_in_a_blocking_call_is_still_the_clients_answer(tmp_path: Path) -> None:
    async def scenario() -> None:
        ca = _ca("http://127.0.0.1:9/dir", tmp_path)  # nothing listens on the discard port here
        ca.load_or_create_key(create=True)
        try:
            with pytest.raises(AcmemsError) as info:
                await ca.start_ready()
            assert info.value.status == 503 and info.value.retry_after == 30
        finally:
            ca.close()

    asyncio.run(scenario())


class NoSolver:
    name = "none"
    challenge_type = "http-01"

    async def present(self, identifier: str, token: str, validation: str) -> None:
        return None

    async def cleanup(self, identifier: str, token: str, validation: str) -> None:
        return None

    def warnings(self) -> list[str]:
        return []

    async def recover(self) -> int:
        return 0
