"""The commands: ``acmems`` (``main``: serve, check, list, revoke, import, db init, dns-check,
persist-record, ...) and ``acme-register`` (``register``); argv in, exit code out. The top layer:
it may import anything of acmems.
"""

from __future__ import annotations

from acmems.cli.main import main

__all__ = ["main"]
