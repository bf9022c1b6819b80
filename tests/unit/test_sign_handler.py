"""The management handler in-process, over real HTTP on loopback, with a small fake signer in place
of the issuer: every status of the README's answer table, with its one-line body and headers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from acmems.config import settings_from_sources
from acmems.core.csr import CsrInfo
from acmems.core.settings import AuthSettings, Settings
from acmems.errors import ANSWERS, AcmemsError, CaError, DnsUpdateError, IssuanceTimeout, Kind, http_answer
from acmems.http.mgmt import SignHandler, health_page, management_handler, metrics_page
from acmems.http.plumbing import MAX_HEADER_BYTES, OneLineErrorServer
from acmems.issuance.issuer import SignResult
from acmems.metrics import Metrics
from tests.conftest import hmac_header, make_csr

CONFIG = """
[account]
dir = /nonexistent
[mgmt]
listener = 127.0.0.1:1
max-size = 4k
body-timeout = 0.5
[verification "http"]
type = http01
[auth "local"]
ip = 127.0.0.1
domain = *.example.test
[auth "hmac"]
hmac_type = sha256
hmac_key = secret-key
domain = *.sub.example2.test
"""
CHAIN = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"

# What the fake signer does for a CSR whose first name starts with this label.
OUTCOMES: dict[str, Callable[[], Exception] | None] = {
    "issued": None,
    "cached": None,
    "wildcard": lambda: AcmemsError("*.x needs DNS-01", kind=Kind.WILDCARD_NEEDS_DNS01),
    "invalid": lambda: CaError("the CA could not validate", kind=Kind.VALIDATION_FAILED),
    "limited": lambda: CaError("rate-limited", kind=Kind.RATE_LIMITED, retry_after=120),
    "refused": lambda: CaError("the CA refused: badCSR", kind=Kind.CA_REFUSED),
    "dnsrefused": lambda: DnsUpdateError("REFUSED", kind=Kind.DNS_REFUSED),
    "down": lambda: CaError("the ACME CA cannot be reached", kind=Kind.CA_UNREACHABLE),
    "slow": lambda: IssuanceTimeout("still being issued"),
    "bug": lambda: RuntimeError("secret internal detail"),
}


class FakeSigner:
    def __init__(self) -> None:
        self.calls = 0

    async def sign(self, csr: CsrInfo, block: AuthSettings, timeout: float) -> SignResult:
        self.calls += 1
        outcome = OUTCOMES[csr.names[0].split(".")[0]]
        if outcome is not None:
            raise outcome()
        return SignResult(CHAIN, cache_hit=csr.names[0].startswith("cached"))


class FakeRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.issuer = FakeSigner()


Server = tuple[str, FakeRuntime, Metrics]


@pytest.fixture
def serve() -> Callable[[Callable[[Server], Coroutine[Any, Any, None]]], None]:
    """Run a scenario against the handler served on a free loopback port."""

    def run(scenario: Callable[[Server], Coroutine[Any, Any, None]]) -> None:
        async def main() -> None:
            runtime = FakeRuntime(settings_from_sources([("test.ini", CONFIG)]))
            metrics = Metrics()
            sign = SignHandler(lambda: runtime, metrics)
            pages = {"/health": health_page(list), "/metrics": metrics_page(metrics)}
            handler = management_handler(sign, pages, lambda: runtime)
            runner = web.ServerRunner(OneLineErrorServer(handler, access_log=None), handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            try:
                await scenario((f"http://127.0.0.1:{port}", runtime, metrics))
            finally:
                await runner.cleanup()

        asyncio.run(main())

    return run


async def post(
    base: str, body: bytes, headers: dict[str, str] | None = None, source: str = "127.0.0.1", path: str = "/sign"
) -> tuple[int, str, dict[str, str]]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(base + path, data=body, headers=headers) as response:
            return response.status, await response.text(), dict(response.headers)


async def raw(base: str, request: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


def csr_for(label: str, domain: str = "example.test") -> bytes:
    return make_csr([f"{label}.{domain}"])[0]


@pytest.mark.parametrize(
    ("label", "status", "line"),
    [
        ("issued", 200, "-----BEGIN CERTIFICATE-----"),
        ("cached", 200, "-----BEGIN CERTIFICATE-----"),
        ("wildcard", 400, "*.x needs DNS-01"),
        ("invalid", 421, "the CA could not validate"),
        ("limited", 429, "rate-limited"),
        ("refused", 502, "the CA refused: badCSR"),
        ("dnsrefused", 502, "REFUSED"),
        ("down", 503, "the ACME CA cannot be reached"),
        ("slow", 504, "still being issued"),
        ("bug", 500, "internal error; see the acmems log"),
    ],
)
def test_the_signers_answer_or_error_becomes_the_status_of_its_kind(
    serve: Callable[[Callable[[Server], Coroutine[Any, Any, None]]], None], label: str, status: int, line: str
) -> None:
    async def scenario(server: Server) -> None:
        base, _runtime, metrics = server
        got, text, headers = await post(base, csr_for(label))
        assert (got, text.splitlines()[0]) == (status, line)
        assert "secret internal detail" not in text
        if status in (429, 503, 504):
            assert headers["Retry-After"] == {429: "120", 503: "30", 504: "30"}[status]
        else:
            assert "Retry-After" not in headers
        assert f'acmems_sign_requests_total{{status="{status}"}} 1.0' in metrics.render().decode()

    serve(scenario)


def test_refusals_before_the_signer(serve: Callable[[Callable[[Server], Coroutine[Any, Any, None]]], None]) -> None:
    async def scenario(server: Server) -> None:
        base, runtime, _metrics = server
        csr = csr_for("issued")
        assert (await post(base, csr, source="127.0.0.2"))[0] == 403  # no block for this address
        hmac_csr = csr_for("issued", "sub.example2.test")
        wrong = {"Authentication": hmac_header(hmac_csr, key="another-key")}
        assert (await post(base, hmac_csr, wrong, source="127.0.0.2"))[0] == 403
        right = {"Authentication": hmac_header(hmac_csr, key="secret-key")}
        assert (await post(base, hmac_csr, right, source="127.0.0.2"))[0] == 200
        outside = make_csr(["issued.example.org"])[0]
        status, text, _ = await post(base, outside)
        assert status == 403 and "issued.example.org" in text
        assert (await post(base, b"not a csr"))[:2] == (
            415,
            "the body is not a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----)\n",
        )
        assert (await post(base, b"x" * 5000))[0] == 413
        assert (await post(base, csr, path="/other"))[0] == 404
        async with aiohttp.ClientSession() as session, session.get(base + "/sign") as response:
            assert (response.status, response.headers["Allow"]) == (405, "POST")
        assert runtime.issuer.calls == 1  # only the accepted HMAC request reached the signer

    serve(scenario)


def test_no_length_a_slow_body_and_oversized_headers(
    serve: Callable[[Callable[[Server], Coroutine[Any, Any, None]]], None],
) -> None:
    async def scenario(server: Server) -> None:
        base = server[0]
        chunked = b"POST /sign HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
        assert (await raw(base, chunked)).startswith(b"HTTP/1.1 411")
        partial = b"POST /sign HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n-----BEGIN"
        answer = await raw(base, partial)
        assert answer.startswith(b"HTTP/1.1 408") and b"body-timeout" in answer
        fields = "".join(f"X-Filler-{i}: {'a' * 1600}\r\n" for i in range(64))  # ~100 KB, each field small
        big = f"POST /sign HTTP/1.1\r\nHost: x\r\n{fields}Content-Length: 1\r\nConnection: close\r\n\r\nx".encode()
        answer = await raw(base, big)
        assert answer.startswith(b"HTTP/1.1 431") and str(MAX_HEADER_BYTES).encode() in answer
        many = "".join(f"X-{i}: 1\r\n" for i in range(150))
        answer = await raw(base, f"GET /health HTTP/1.1\r\nHost: x\r\n{many}\r\n".encode())
        assert answer[:12] in (b"HTTP/1.1 431", b"HTTP/1.0 431") and answer.count(b"\r\n\r\n") == 1
        long_field = f"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: {'b' * 9000}\r\n\r\n".encode()
        assert (await raw(base, long_field))[9:12] == b"431"

    serve(scenario)


def test_an_auth_decision_is_remembered_per_configuration_only(
    serve: Callable[[Callable[[Server], Coroutine[Any, Any, None]]], None],
) -> None:
    async def scenario(server: Server) -> None:
        base, runtime, _metrics = server
        csr = csr_for("issued")
        assert (await post(base, csr))[0] == 200
        # a reload that drops the block: the remembered grant must not outlive its configuration
        runtime.settings = settings_from_sources([("test.ini", CONFIG.replace("ip = 127.0.0.1\n", "ip = 10.9.9.9\n"))])
        assert (await post(base, csr))[0] == 403

    serve(scenario)


def test_every_kind_has_an_answer_and_unknown_errors_are_a_bare_500() -> None:
    assert set(ANSWERS) == set(Kind)
    for kind, answer in ANSWERS.items():
        error = AcmemsError("what to fix", kind=kind)
        assert http_answer(error).status == answer.status
        assert ("Retry-After" in http_answer(error).headers) == (answer.retry_after is not None)
    assert http_answer(ValueError("private")).line == "internal error; see the acmems log"
