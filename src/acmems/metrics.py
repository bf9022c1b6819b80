"""Prometheus metrics (``GET /metrics`` on the management listener), one registry per server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """The counters acmems keeps; gauges read their values when scraped."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # the *_created series only add noise
        self.registry = CollectorRegistry(auto_describe=True)
        self._texts: list[Callable[[], bytes]] = []
        r = self.registry
        self.requests = Counter("acmems_sign_requests", "POST /sign requests by answer status", ["status"], registry=r)
        self.issuances = Counter(
            "acmems_issuances",
            "Orders run, by outcome and verification type",
            ["outcome", "verification_type"],
            registry=r,
        )
        self.issuance_seconds = Histogram(
            "acmems_issuance_duration_seconds",
            "Time of a whole order, from new order to certificate",
            ["verification_type"],
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )
        self.renewals = Counter("acmems_renewals", "Background renewals by outcome", ["outcome"], registry=r)
        self.cache_hits = Counter("acmems_cache_hits", "Answers from the certificate cache", registry=r)
        self.cache_misses = Counter("acmems_cache_misses", "Requests the cache could not answer", registry=r)
        self.ca_errors = Counter(
            "acmems_ca_errors", "Errors from the ACME CA by problem type", ["problem_type"], registry=r
        )
        self.dns_errors = Counter(
            "acmems_dns_update_errors", "Failed DNS updates or lookups", ["verification"], registry=r
        )
        self.rate_limit_refusals = Counter(
            "acmems_rate_limit_refusals",
            "Orders refused here because the CA's rate limit would refuse them, by limit",
            ["limit"],
            registry=r,
        )
        self.challenge_requests = Counter(
            "acmems_challenge_requests",
            "Requests to the HTTP-01 challenge listeners, by answer: answered, unknown (a token nobody "
            "holds), not-a-token (not shaped like one: no lookup), unavailable (the cluster database)",
            ["answer"],
            registry=r,
        )
        self.acme_requests = Counter(
            "acmems_acme_requests",
            "ACME server requests by resource and answer status",
            ["resource", "status"],
            registry=r,
        )
        self.block_requests = Counter(
            "acmems_block_requests", "POST /sign requests accepted by each auth block", ["block"], registry=r
        )
        self.block_orders = Counter(
            "acmems_block_orders",
            "New orders the clients of each auth block asked for (renewals not)",
            ["block"],
            registry=r,
        )
        self.block_refusals = Counter(
            "acmems_block_refusals",
            "Orders refused by an auth block's limit-new-orders or limit-pending",
            ["block", "limit"],
            registry=r,
        )
        self.storage_errors = Counter("acmems_storage_errors", "Certificates that could not be cached", registry=r)
        self.certificates_cached = Gauge("acmems_certificates_cached", "Certificates in the file caches", registry=r)
        self.soonest_expiry = Gauge(
            "acmems_certificate_soonest_expiry_seconds",
            "Seconds until the cached certificate that expires first does (absent without certificates)",
            registry=r,
        )
        self.worker_restarts = Counter(
            "acmems_worker_restarts", "Worker processes that stopped unexpectedly and were started again", registry=r
        )
        self.started = Gauge("acmems_start_time_seconds", "When this acmems started (Unix time)", registry=r)
        self.started.set(time.time())

    def watch_cache(self, count: Callable[[], float], soonest_expiry: Callable[[], float]) -> None:
        """Read the cache gauges from these functions at every scrape."""
        self.certificates_cached.set_function(count)
        self.soonest_expiry.set_function(soonest_expiry)

    def watch_cluster(self, up: Callable[[], bool], transactions: Callable[[], int]) -> None:
        """Export the cluster database's state and how many transactions this process ran on it."""
        self.registry.register(_ClusterCollector(up, transactions))

    def add_text(self, series: Callable[[], bytes]) -> None:
        """Append ``series()`` (exposition text of many samples, written by its owner) to every scrape."""
        self._texts.append(series)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry) + b"".join(text() for text in self._texts)


class _ClusterCollector(Collector):
    """``acmems_database_up`` and ``acmems_database_transactions_total``, read at every scrape."""

    def __init__(self, up: Callable[[], bool], transactions: Callable[[], int]) -> None:
        self.up = up
        self.transactions = transactions

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "acmems_database_up", "Whether the cluster database answered the last use", value=float(self.up())
        )
        yield CounterMetricFamily(
            "acmems_database_transactions",
            "Transactions this process ran on the cluster database",
            value=float(self.transactions()),
        )
