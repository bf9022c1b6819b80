"""Synchronous account operations at the CA: the HTTP session, the directory, registration and
revocation. ``acme-register`` and ``acmems revoke`` call them directly; the server calls them in
its worker threads (:mod:`acmems.ca.session`)."""

from __future__ import annotations

import os
from typing import cast

import requests
from acme import client as acme_client
from acme import errors as acme_errors
from acme import messages
from cryptography import x509
from josepy.jwa import JWASignature
from josepy.jwk import JWK

from acmems.ca.account_files import AccountFiles
from acmems.ca.adapter import CaNetwork
from acmems.core.settings import AccountSettings
from acmems.errors import ConfigError

__all__ = ["USER_AGENT", "ca_network", "create_account", "fetch_directory", "new_registration", "register", "revoke"]

USER_AGENT = "acmems"
_NETWORK_TIMEOUT = 30


def ca_network(
    settings: AccountSettings, key: JWK, alg: JWASignature, account: messages.RegistrationResource | None = None
) -> CaNetwork:
    """A fresh HTTP session to the CA that trusts ``ca-bundle`` (or the system's CAs)."""
    verify: bool | str = str(settings.ca_bundle) if settings.ca_bundle else True
    if verify is True:
        # What requests would read from the environment at every request (below, it no longer does).
        verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    net = CaNetwork(
        key=key,
        account=account,
        alg=alg,
        verify_ssl=cast(bool, verify),  # requests takes a CA-bundle path where the library says bool
        user_agent=USER_AGENT,
        timeout=_NETWORK_TIMEOUT,
    )
    # requests looks up proxy variables, .netrc and CA-bundle variables on every request (about ten
    # per order): resolve the proxies for the CA once here instead.
    net.session.proxies.update(requests.utils.get_environ_proxies(settings.acme_server))
    net.session.trust_env = False
    return net


def fetch_directory(settings: AccountSettings, net: CaNetwork) -> messages.Directory:
    """GET the directory (RFC 8555 §7.1.1)."""
    return acme_client.ClientV2.get_directory(settings.acme_server, net)


def new_registration(
    key: JWK,
    directory: messages.Directory,
    emails: tuple[str, ...],
    agree: bool,
    eab_kid: str | None,
    eab_hmac_key: str | None,
) -> messages.NewRegistration:
    """The newAccount request (RFC 8555 §7.3), with External Account Binding (§7.3.4) if given."""
    eab = None
    if eab_kid is not None and eab_hmac_key is not None:
        eab = messages.ExternalAccountBinding.from_data(
            account_public_key=key.public_key(), kid=eab_kid, hmac_key=eab_hmac_key, directory=directory
        )
    return messages.NewRegistration.from_data(
        email=",".join(emails) if emails else None,
        terms_of_service_agreed=agree or None,
        external_account_binding=eab,
    )


def create_account(client: acme_client.ClientV2, request: messages.NewRegistration) -> messages.RegistrationResource:
    """newAccount (RFC 8555 §7.3); a key that is already registered gets its existing account (§7.3.1)."""
    try:
        return client.new_account(request)
    except acme_errors.ConflictError as conflict:
        return client.query_registration(messages.RegistrationResource(uri=str(conflict), body=messages.Registration()))


def register(
    settings: AccountSettings, files: AccountFiles, key: JWK, alg: JWASignature
) -> messages.RegistrationResource:
    """Create (or find) the account for ``key`` as ``[account]`` allows, and save it.

    Raises:
        ConfigError: the CA's terms are not accepted, or it needs External Account Binding.
    """
    net = ca_network(settings, key, alg)
    directory = fetch_directory(settings, net)
    tos = directory.meta.terms_of_service
    if tos is not None and not settings.accepts_terms(tos):
        raise ConfigError(
            f"the CA's terms of service ({tos}) are not accepted; set [account] "
            f"accept-terms-of-service = {tos} (or yes), or run acme-register"
        )
    if directory.meta.external_account_required and settings.eab_kid is None:
        raise ConfigError("the CA requires External Account Binding: set [account] eab-kid and eab-hmac-key")
    client = acme_client.ClientV2(directory, net)
    request = new_registration(
        key, directory, settings.emails, tos is not None, settings.eab_kid, settings.eab_hmac_key
    )
    regr = create_account(client, request)
    files.save_registration(regr)
    return regr


def revoke(
    settings: AccountSettings,
    files: AccountFiles,
    key: JWK,
    alg: JWASignature,
    certificate: x509.Certificate,
    reason: int,
) -> None:
    """Revoke ``certificate`` with the account key (RFC 8555 §7.6).

    Raises:
        ConfigError: there is no registration yet.
    """
    regr = files.load_registration()
    if regr is None:
        raise ConfigError(f"no registration at {files.registration_path}; run acme-register")
    net = ca_network(settings, key, alg, regr)
    client = acme_client.ClientV2(fetch_directory(settings, net), net)
    client.revoke(certificate, reason)
