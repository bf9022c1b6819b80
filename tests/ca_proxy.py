"""A CA that answers ``rateLimited`` on demand: an HTTPS proxy in front of Pebble (which cannot)
that answers newOrder with Boulder's 429 problem documents for chosen names (its real wording, a
fresh Replay-Nonce, a Retry-After) and passes every other request through unchanged.

Pebble builds its URLs from the Host header, which is passed on: the directory, orders and
authorizations all point at the proxy, and the JWS ``url`` a client signs is the one Pebble expects.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from tests.realservices import Pebble, free_port

__all__ = ["BOULDER", "RateLimitingCa"]

# Boulder's wording (ratelimits/limiter.go), as Let's Encrypt answers.
_TAIL = "in the last 168h0m0s, retry after 2026-12-12 09:13:16 UTC: see https://letsencrypt.org/docs/rate-limits/"
BOULDER = {
    "account": "too many new orders (300) from this account in the last 3h0m0s, retry after 2026-12-05 23:00:00 UTC",
    "set": f"too many certificates (5) already issued for this exact set of identifiers {_TAIL}",
    "domain": 'too many certificates (50) already issued for "{value}" ' + _TAIL,
    "name": 'too many failed authorizations (5) for "{value}" in the last 1h0m0s, retry after 2026-12-05 23:00:00 UTC',
}


def _payload(body: bytes) -> dict[str, object]:
    """The payload of a flattened JWS (not verified: Pebble does that for what passes)."""
    try:
        jws = json.loads(body)
        encoded = str(jws.get("payload", ""))
        return dict(json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)) or b"{}"))
    except (ValueError, TypeError, AttributeError):
        return {}


class RateLimitingCa:
    """``refuse[name] = (detail, retry_after)``: a newOrder with ``name`` among its identifiers is
    answered 429 rateLimited with ``detail``; ``refuse_sets["a,b"]``: one for exactly those names
    (sorted, joined by commas). ``refused`` lists the names of each refused order."""

    def __init__(self, pebble: Pebble, directory: Path) -> None:
        self.pebble = pebble
        self.port = free_port()
        self.refuse: dict[str, tuple[str, int]] = {}
        self.refuse_sets: dict[str, tuple[str, int]] = {}
        self.refused: list[list[str]] = []
        self.orders = 0  # newOrder requests passed to Pebble
        cert, key = pebble.dir / "tls" / "cert.pem", pebble.dir / "tls" / "key.pem"
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        upstream = ssl.create_default_context(cafile=str(pebble.ca_bundle))
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self, body: bytes | None) -> None:
                connection = http.client.HTTPSConnection("127.0.0.1", pebble.port, context=upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                self.send_response(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding", "content-length", "keep-alive"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                connection.close()

            def _refusal(self, names: list[str]) -> tuple[str, int] | None:
                exact = proxy.refuse_sets.get(",".join(sorted(names)))
                if exact is not None:
                    return exact
                for name in names:
                    if name in proxy.refuse:
                        return proxy.refuse[name]
                return None

            def _nonce(self) -> str:
                connection = http.client.HTTPSConnection("127.0.0.1", pebble.port, context=upstream, timeout=30)
                connection.request("HEAD", "/nonce-plz", headers={"Host": self.headers.get("Host", "")})
                nonce = connection.getresponse().getheader("Replay-Nonce", "")
                connection.close()
                return nonce

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/order-plz":
                    identifiers = _payload(body).get("identifiers")
                    listed = identifiers if isinstance(identifiers, list) else []
                    names = [str(i.get("value", "")) for i in listed if isinstance(i, dict)]
                    refusal = self._refusal(names)
                    if refusal is not None:
                        detail, retry_after = refusal
                        proxy.refused.append(names)
                        problem = json.dumps(
                            {"type": "urn:ietf:params:acme:error:rateLimited", "detail": detail, "status": 429}
                        ).encode()
                        self.send_response(429)
                        self.send_header("Content-Type", "application/problem+json")
                        self.send_header("Replay-Nonce", self._nonce())
                        self.send_header("Retry-After", str(retry_after))
                        self.send_header("Content-Length", str(len(problem)))
                        self.end_headers()
                        self.wfile.write(problem)
                        return
                    proxy.orders += 1
                self._forward(body)

            def do_GET(self) -> None:
                self._forward(None)

            def do_HEAD(self) -> None:
                self._forward(None)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def __enter__(self) -> RateLimitingCa:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
