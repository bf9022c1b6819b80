"""The floor: the ``acme`` library itself, in-process, with our own 50 ms polling.

What any ACME client built on certbot's ``acme`` package must spend per certificate against this
Pebble: new order, one challenge answered (HTTP-01 by a tiny in-process HTTP server, DNS-01 by a
TSIG-signed update to BIND), authorization polled every 50 ms, finalize, download.
"""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dns.query
import dns.tsig
from acme import client as acme_client
from acme import messages
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from acmems.challenges.dns01_update import build_update, challenge_name

__all__ = ["AcmeFloor"]


class _Tokens(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    tokens: dict[str, str]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, _Tokens)
        answer = self.server.tokens.get(self.path.rsplit("/", 1)[-1])
        self.send_response(200 if answer else 404)
        body = (answer or "").encode()
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class AcmeFloor:
    """One account at ``directory_url``; answers HTTP-01 on ``http_port`` and DNS-01 through BIND."""

    def __init__(self, directory_url: str, ca_bundle: Path, http_port: int, dns_port: int, key: dns.tsig.Key) -> None:
        self.key = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        net = acme_client.ClientNetwork(self.key, alg=ES256, verify_ssl=str(ca_bundle))  # type: ignore[arg-type]
        directory = acme_client.ClientV2.get_directory(directory_url, net)
        self.client = acme_client.ClientV2(directory, net)
        self.client.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
        self.dns_port = dns_port
        self.tsig = key
        self.server = _Tokens(("127.0.0.1", http_port), _Handler)
        self.server.tokens = {}
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _present(self, kind: str) -> Callable[[str, str, str], Callable[[], None]]:
        def http01(identifier: str, token: str, validation: str) -> Callable[[], None]:
            self.server.tokens[token] = validation

            def remove() -> None:
                self.server.tokens.pop(token, None)

            return remove

        def dns01(identifier: str, token: str, validation: str) -> Callable[[], None]:
            name = challenge_name(identifier)
            zone = "sub.example2.test" if name.endswith("sub.example2.test") else "example.test"
            add = build_update(zone, name, validation, 5, delete=False, key=self.tsig)
            dns.query.tcp(add, "127.0.0.1", port=self.dns_port, timeout=5)

            def remove() -> None:
                delete = build_update(zone, name, validation, 5, delete=True, key=self.tsig)
                dns.query.tcp(delete, "127.0.0.1", port=self.dns_port, timeout=5)

            return remove

        return http01 if kind == "http-01" else dns01

    def issue(self, csr_pem: bytes, kind: str) -> float:
        """One certificate; returns the seconds it took."""
        started = time.perf_counter()
        present = self._present(kind)
        order = self.client.new_order(csr_pem)
        cleanups = []
        for authzr in order.authorizations:
            challb = next(c for c in authzr.body.challenges if c.chall.typ == kind)
            response, validation = challb.response_and_validation(self.key)
            cleanups.append(present(authzr.body.identifier.value, challb.chall.encode("token"), validation))
            self.client.answer_challenge(challb, response)
        for authzr in order.authorizations:
            while True:
                authzr, _ = self.client.poll(authzr)
                if authzr.body.status != messages.STATUS_PENDING:
                    break
                time.sleep(0.05)
            assert authzr.body.status == messages.STATUS_VALID, authzr
        for cleanup in cleanups:
            cleanup()
        self.client.begin_finalization(order)
        while True:
            body = messages.Order.from_json(self.client._post_as_get(order.uri).json())
            if body.status == messages.STATUS_VALID and body.certificate:
                self.client._post_as_get(body.certificate)
                break
            time.sleep(0.05)
        return time.perf_counter() - started
