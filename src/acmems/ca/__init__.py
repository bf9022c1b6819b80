"""The upstream ACME client: one session per account with a CA (RFC 8555), built on certbot's
``acme`` library.

``session`` (:class:`AcmeCa`: registration, orders, revocation, renewal info, the CA's pauses),
``order`` (one order driven through :mod:`acmems.core.order_steps`), ``account`` and
``account_files`` (the account key and registration on disk), ``problems`` (the CA's answers as
our errors) and ``adapter`` (what the ``acme`` library lacks). It imports :mod:`acmems.challenges`
(the solvers an order asks), :mod:`acmems.core`, :mod:`acmems.errors` and :mod:`acmems.fileio`.
"""
