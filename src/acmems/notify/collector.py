"""The notifier's part of ``/metrics``, read at every scrape: the conditions in force; events sent,
failed and dropped per receiver; the queue's length (:meth:`NotifyCollector.collect`), and the
per-certificate series (expiry, renewal point, last pickup; labelled by the certificate's first name
and storage, never by client), left out above ``[notify] metrics-certificates``
(:meth:`NotifyCollector.certificate_series`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from acmems.core.event_kinds import EventKind
from acmems.notify.notifier import Notifier
from acmems.storage.base import CachedCertificate

__all__ = ["NotifyCollector"]


class NotifyCollector(Collector):
    """``stores()`` gives (storage name, its certificates) of the configuration in force."""

    def __init__(
        self,
        notifier: Notifier,
        stores: Callable[[], list[tuple[str, list[CachedCertificate]]]],
        count: Callable[[], int],
    ) -> None:
        self.notifier = notifier
        self.stores = stores
        self.count = count  # how many certificates, without listing them

    def collect(self) -> Iterable[Metric]:
        n = self.notifier
        yield GaugeMetricFamily(
            "acmems_certificates_overdue",
            "Certificates past their renewal point by [notify] overdue-grace and not renewed",
            value=n.count(EventKind.OVERDUE),
        )
        yield GaugeMetricFamily(
            "acmems_certificates_expiring",
            "Certificates still asked for with little lifetime left",
            value=n.count(EventKind.EXPIRING),
        )
        yield GaugeMetricFamily(
            "acmems_certificates_not_picked_up",
            "Clients that have not fetched the renewed certificate of the one they fetched before",
            value=n.count(EventKind.NOT_PICKED_UP),
        )
        yield GaugeMetricFamily("acmems_notify_queue_length", "Events not yet delivered", value=n.queue_length())
        yield CounterMetricFamily(
            "acmems_notify_watch_passes",
            "Passes of the watch for overdue, expiring and not picked up",
            value=n.watch_passes,
        )
        yield CounterMetricFamily(
            "acmems_notify_failed_held",
            "Failed events held back by [notify] repeat-failed (each counted in the next failed event)",
            value=n.failed_held,
        )
        sent = CounterMetricFamily("acmems_notify_events_sent", "Events delivered, by receiver", labels=["receiver"])
        failed = CounterMetricFamily(
            "acmems_notify_events_failed", "Deliveries that failed (and are retried), by receiver", labels=["receiver"]
        )
        dropped = CounterMetricFamily(
            "acmems_notify_events_dropped", "Events given up after a day of retries, by receiver", labels=["receiver"]
        )
        for name, receiver in n.receivers.items():
            sent.add_metric([name], receiver.sent)
            failed.add_metric([name], receiver.failed)
            dropped.add_metric([name], receiver.dropped)
        yield from (sent, failed, dropped)

    def certificate_series(self) -> bytes:
        """The per-certificate series as exposition text, written here rather than through the
        client library's objects: 10,000 certificates are 30,000 samples, which the library takes
        most of a second to build and print (the event loop would stall for it at every scrape)."""
        if self.count() > self.notifier.settings.metrics_certificates:
            return b""  # only the totals (acmems_certificates_cached and the gauges above)
        stores = self.stores()
        expiry, renewal, pickup = [], [], []
        for storage, entries in stores:
            newest: dict[str, CachedCertificate] = {}
            for entry in entries:
                first = entry.names[0] if entry.names else entry.digest[:16]
                known = newest.get(first)
                if known is None or entry.not_after > known.not_after:
                    newest[first] = entry
            where = _label(storage)
            for first, entry in sorted(newest.items()):
                labels = f'{{name="{_label(first)}",storage="{where}"}}'
                expiry.append(f"acmems_certificate_expiry_timestamp_seconds{labels} {entry.not_after.timestamp()!r}\n")
                renewal.append(f"acmems_certificate_renewal_timestamp_seconds{labels} {entry.renew_at.timestamp()!r}\n")
                track = self.notifier.pickups.get(storage, entry.digest)
                last = max((f.when for f in track.fetches.values()), default=0.0) if track is not None else 0.0
                last = max(last, entry.last_requested)
                if last:
                    pickup.append(f"acmems_certificate_last_pickup_timestamp_seconds{labels} {last!r}\n")
        parts = []
        for name, help_text, lines in (
            ("acmems_certificate_expiry_timestamp_seconds", "When the certificate expires", expiry),
            (
                "acmems_certificate_renewal_timestamp_seconds",
                "When the certificate is due for renewal (ARI window or lifetime rule)",
                renewal,
            ),
            ("acmems_certificate_last_pickup_timestamp_seconds", "When a client last fetched the certificate", pickup),
        ):
            parts.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
            parts += lines
        return "".join(parts).encode()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
