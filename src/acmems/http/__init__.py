"""The HTTP side, on aiohttp: ``plumbing`` (the server with header limits and one-line error
answers, the HTTP-01 challenge handler), ``mgmt`` (``POST /sign``, ``/health``, ``/metrics``, the
``admin-ip`` check), ``status_page`` (``GET /status``) and ``listeners`` (the sockets opened and
closed in order). It imports :mod:`acmems.issuance` and the layers below, never the backends.
"""
