"""Telling operators: events (issued, failed, overdue, expiring, not-picked-up) sent to webhooks,
mail and commands, kept until delivered (see docs/notify.md).

The submodules are imported where used (no imports here: :mod:`acmems.core.settings` needs
:mod:`acmems.notify.events` and :mod:`acmems.notify.watch` without the rest)."""
