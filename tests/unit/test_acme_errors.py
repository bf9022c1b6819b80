"""How the CA's answers become the client's status codes; the answer's PEM layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from acme import errors as acme_errors
from acme import messages

from acmems.ca.account import ca_network
from acmems.ca.account_files import generate_key, jwk_and_alg
from acmems.ca.problems import ca_error, format_chain
from acmems.core.settings import AccountSettings
from acmems.errors import AcmemsError, CaError


def response_with(headers: dict[str, str]) -> requests.Response:
    response = requests.Response()
    response.status_code = 429
    response.headers.update(headers)
    return response


def test_rate_limited_is_429_with_the_cas_retry_after() -> None:
    error = messages.Error.with_code("rateLimited", detail="too many certificates")
    mapped = ca_error(error, "ca", response_with({"Retry-After": "120"}))
    assert isinstance(mapped, CaError)
    assert (mapped.status, mapped.retry_after, mapped.problem_type) == (429, 120, "rateLimited")
    assert "too many certificates" in mapped.message


def test_rate_limited_with_an_http_date() -> None:
    mapped = ca_error(
        messages.Error.with_code("rateLimited"), "ca", response_with({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    )
    assert mapped.status == 429 and mapped.retry_after == 0


def test_validation_problems_are_421() -> None:
    for code in ("unauthorized", "dns", "connection", "incorrectResponse", "caa", "rejectedIdentifier"):
        mapped = ca_error(messages.Error.with_code(code, detail="d"), "ca")
        assert mapped.status == 421 and code in mapped.message


def test_unreachable_ca_is_503_with_retry_after() -> None:
    mapped = ca_error(requests.exceptions.ConnectionError("refused"), "https://ca/dir")
    assert mapped.status == 503 and mapped.retry_after and "cannot be reached" in mapped.message
    assert "refused" not in mapped.message and "https://ca/dir" in mapped.log_detail
    assert ca_error(requests.exceptions.SSLError("bad cert"), "ca").status == 503
    assert ca_error(requests.exceptions.ReadTimeout("slow"), "ca").status == 503


def test_other_problems_and_odd_answers_are_502_and_bugs_500() -> None:
    assert ca_error(messages.Error.with_code("badCSR", detail="x"), "ca").status == 502
    assert ca_error(messages.Error.with_code("serverInternal"), "ca").status == 503
    assert ca_error(acme_errors.ClientError("odd"), "ca").status == 502
    bug = ca_error(ZeroDivisionError(), "ca")
    assert bug.status == 500 and type(bug) is AcmemsError


CERT = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


def test_chain_blocks_are_separated_by_a_blank_line() -> None:
    assert format_chain(CERT + CERT) == (CERT + "\n" + CERT).encode()
    assert format_chain(CERT + "\n\n" + CERT + "\n") == (CERT + "\n" + CERT).encode()
    try:
        format_chain("nothing")
    except CaError as exc:
        assert exc.status == 502
    else:
        raise AssertionError("no certificate must be an error")


def test_the_ca_session_resolves_proxy_and_ca_variables_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key, alg = jwk_and_alg(generate_key("ec", 256))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.net:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "bundle.pem"))
    settings = AccountSettings(acme_server="https://ca.example.org/directory", dir=tmp_path)
    net = ca_network(settings, key, alg)
    assert net.session.trust_env is False  # no environment lookups per request
    assert net.session.proxies["https"] == "http://proxy.example.net:3128"
    assert str(net.verify_ssl) == str(tmp_path / "bundle.pem")
    monkeypatch.setenv("NO_PROXY", "ca.example.org")
    assert "https" not in ca_network(settings, key, alg).session.proxies
    configured = AccountSettings(
        acme_server="https://ca.example.org/directory", dir=tmp_path, ca_bundle=tmp_path / "own.pem"
    )
    assert str(ca_network(configured, key, alg).verify_ssl) == str(tmp_path / "own.pem")  # [account] ca-bundle wins
