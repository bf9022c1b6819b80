"""The pure core: values in, values out.

The settings (frozen dataclasses the configuration is read into), CSR checks, the auth policy,
renewal times, the rate limits, the order's protocol steps and the backoff schedule. Nothing here
opens a socket or a file, sleeps or reads the clock unless it is passed in. It imports only
:mod:`acmems.errors`, :mod:`acmems.lru` and outside libraries, never another package of acmems.
"""
