"""acmems as an ACME server (RFC 8555) for the fleet's own ACME clients (certbot, lego, Caddy, ...):
``jws`` (the signed requests), ``problems`` (one table from problem type to status), ``views``
(URLs and JSON), ``service`` (checks and accounts), ``orders``, ``revocation`` (and renewalInfo),
``validation`` (acmems' own http-01 check), ``front`` (the directory and every POST), and
``listener_cert`` (the listener's TLS, or a certificate acmems orders for itself).

It sits above :mod:`acmems.issuance`, whose issuer it shares with ``POST /sign``, and below
:mod:`acmems.http`, which serves it. Its records live behind :class:`acmems.storage.acme_store.AcmeStore`
(files, or the cluster database through the backend).
"""
