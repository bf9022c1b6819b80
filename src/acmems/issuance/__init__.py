"""Issuance: the :class:`~acmems.issuance.issuer.Issuer` (cache, single flight, claims, rate limits,
fallback CAs, events) and the :class:`~acmems.issuance.renewer.Renewer` (proactive renewal, ARI).
``notify_feed`` feeds the notifier and the status page from the running configuration.

It imports the layers below it (:mod:`acmems.ca`, :mod:`acmems.challenges`, :mod:`acmems.storage`,
:mod:`acmems.notify`, :mod:`acmems.core`), never :mod:`acmems.cluster` or :mod:`acmems.backends`:
what is shared by a cluster reaches it through the Protocols the backend implements.
"""
