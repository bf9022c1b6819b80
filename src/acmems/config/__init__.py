"""The configuration: INI files in, one frozen :class:`acmems.core.settings.Settings` out.

Read once at start (and at SIGHUP); every error names the file, line, section and key and says what
would be valid. ``describe`` turns settings back into the text of ``acmems check`` (secrets masked).
It imports :mod:`acmems.core` and :mod:`acmems.errors` only.
"""

from __future__ import annotations

from acmems.config.load import load_settings, settings_from_sources

__all__ = ["load_settings", "settings_from_sources"]
