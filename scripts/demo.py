"""`make demo`: the main job end to end on this machine, with real services on loopback.

Starts BIND 9 (TSIG-only updates) and Pebble 2.10, writes a demo configuration, registers an
account with acme-register, starts acmems, and lets a client that has only openssl and curl get
one HTTP-01 certificate and one wildcard DNS-01 certificate; then certbot, an ACME client, gets one
through acmems' ACME server ([acme-server]). Everything stops at the end.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import ini  # noqa: E402
from tests.realservices import Acmems, Bind, Pebble, free_port, make_tls  # noqa: E402

HMAC_KEY = "demo-shared-secret-change-me"


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def run(command: str, cwd: Path) -> str:
    print(textwrap.indent(command.strip(), "  $ "), flush=True)
    result = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"demo: command failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


def main() -> int:
    work = ROOT / "demo-run"
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir()
    bind = pebble = acmems = None
    try:
        say("starting BIND 9 (zones example.test and sub.example2.test, TSIG-signed updates only)")
        bind = Bind(work / "bind").start()
        http_port = free_port()
        say(f"starting Pebble 2.10, a real ACME CA (it checks HTTP-01 on port {http_port})")
        pebble = Pebble(work / "pebble", bind.port, http_port).start()
        mgmt_port, acme_port = free_port(), free_port()
        listener_ca, listener_cert, listener_key = make_tls(work / "acme-server-tls")
        config = work / "acmems.ini"
        config.write_text(
            ini.ini(
                # A person's configuration: the terms are accepted by acme-register below, not here.
                ini.section(
                    "account",
                    {
                        "acme-server": pebble.directory_url,
                        "dir": work / "account",
                        "ca-bundle": pebble.ca_bundle,
                        "email": "ops@example.test",
                    },
                ),
                ini.mgmt(mgmt_port, default_verification="http"),
                ini.http01("http", http_port),
                ini.dns01("dns", bind),
                ini.file_storage("file", work / "storage"),
                ini.auth("web", ["*.example.test"], ip="127.0.0.1", hmac_key=HMAC_KEY),
                ini.auth(
                    "wildcards",
                    ["*.sub.example2.test", "sub.example2.test"],
                    ip="127.0.0.1",
                    hmac_key=HMAC_KEY,
                    verification="dns",
                ),
                ini.section(
                    "acme-server",
                    {
                        "listener": f"127.0.0.1:{acme_port}",
                        "certificate": listener_cert,
                        "key": listener_key,
                        "dir": work / "acme-server",
                    },
                ),
            )
        )
        print(f"  wrote {config}")
        venv_bin = Path(sys.executable).parent
        say("registering the ACME account (acme-register)")
        print(run(f"{venv_bin}/acme-register --gen-key --register --accept-terms-of-service {config}", work))
        say("starting acmems")
        acmems = Acmems(work / "acmems", config.read_text(), mgmt_port).start()
        print(f"  acmems listens on 127.0.0.1:{mgmt_port}; log: {acmems.log}")

        client = work / "client"
        client.mkdir()
        (client / "hmac.key").write_text(HMAC_KEY + "\n")
        (client / "hmac.key").chmod(0o600)
        root = client / "pebble-root.pem"
        root.write_bytes(pebble.get("/roots/0"))
        script = ROOT / "contrib" / "acmems-client"
        for label, names in (
            ("HTTP-01", ["www.example.test", "mail.example.test"]),
            ("DNS-01 wildcard", ["*.sub.example2.test", "sub.example2.test"]),
        ):
            site = names[1].split(".")[0]
            say(
                f"client: {label} certificate for {', '.join(names)} with contrib/acmems-client (openssl and curl only)"
            )
            command = (
                f"sh {script} --server http://127.0.0.1:{mgmt_port}/sign --hmac-key-file hmac.key "
                f"--key {site}.key --csr {site}.csr --cert {site}.pem --ca-file {root.name} "
                f"--reload 'echo reload: the certificate changed' " + " ".join(f"'{n}'" for n in names)
            )
            print(run(command, client))
            print(run(f"openssl x509 -in {site}.pem -noout -subject -issuer -ext subjectAltName -enddate", client))
        say("running the client again (as its daily timer would): answered from the cache, nothing changes")
        print(run(command, client) or "  (no output: the certificate is unchanged, no reload)")
        say("an ACME client: certbot gets a certificate through acmems' ACME server, bound to the 'web' block")
        eab = dict(line.split(": ", 1) for line in run(f"{venv_bin}/acmems eab {config} web", work).splitlines())
        print(f"  kid {eab['kid']}, hmac (base64url) {eab['hmac'][:6]}...")
        state = work / "certbot"
        print(
            run(
                f"REQUESTS_CA_BUNDLE={listener_ca} {venv_bin}/certbot certonly --non-interactive --agree-tos "
                f"--register-unsafely-without-email --config-dir {state} --work-dir {state} --logs-dir {state} "
                f"--server https://127.0.0.1:{acme_port}/directory --eab-kid {eab['kid']} --eab-hmac-key {eab['hmac']} "
                "--manual --preferred-challenges http --manual-auth-hook /bin/false -d acme.example.test",
                work,
            )
        )
        print(run(f"openssl x509 -in {state}/live/acme.example.test/cert.pem -noout -subject -issuer", work))
        say("acmems list: the cached certificates")
        print(run(f"{venv_bin}/acmems list {config}", work))
        say("a few lines of GET /metrics")
        metrics = run(f"curl -sS http://127.0.0.1:{mgmt_port}/metrics", work)
        for line in metrics.splitlines():
            if line.startswith(
                (
                    "acmems_sign_requests_total",
                    "acmems_issuances_total",
                    "acmems_cache_hits_total",
                    "acmems_certificates_cached",
                    "acmems_certificate_soonest_expiry_seconds",
                )
            ):
                print("  " + line)
        say(f"GET /status (an HTML page; open http://127.0.0.1:{mgmt_port}/status in a browser on this host)")
        page = run(f"curl -sS http://127.0.0.1:{mgmt_port}/status", work)
        for state, names in re.findall(r'<tr data-state="([^"]+)"[^>]*><td class="names">([^<]*)<', page):
            print(f"  {state:<12} {html.unescape(names)}")
        say("what you saw")
        print(
            textwrap.dedent(f"""\
            A real ACME CA (Pebble) issued three certificates through acmems. The first client used
            only openssl and curl (contrib/acmems-client): it made a key and a CSR, posted the CSR with
            an HMAC header to /sign, checked the chain and installed it. acmems answered the CA's HTTP-01
            check itself and, for the wildcard, updated BIND by TSIG-signed RFC 2136 updates (and
            removed the records again). Then certbot got one through acmems' ACME server, its account
            bound to the same auth block by an external account binding (docs/acme-server.md).
            Files: {work} (acmems.ini, client/, certbot/, acmems/acmems.log).

            To use Let's Encrypt's staging CA instead, set in [account]:
                acme-server = https://acme-staging-v02.api.letsencrypt.org/directory
            drop ca-bundle, run acme-register --gen-key --register --accept-terms-of-service CONFIG,
            and forward /.well-known/acme-challenge/ from your web servers to the http01 listener
            (docs/webservers.md, docs/configuration.md).""")
        )
        return 0
    finally:
        for service in (acmems, pebble, bind):
            if service is not None:
                service.stop()
        os.sync()


if __name__ == "__main__":
    raise SystemExit(main())
