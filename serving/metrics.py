"""Prometheus metrics of the server, in the spirit of TF Serving's (prometheus_client).

Exposed at ``GET /monitoring/prometheus/metrics`` (TF Serving's default path) as Prometheus
text:

Requests for a model the server does not have are counted under ``model_name=""``, so
clients cannot grow the set of series.

* ``:tensorflow:serving:request_count_total{model_name, status, entrypoint}``: requests by
  TensorFlow status code name (``OK``, ``INVALID_ARGUMENT``, ``NOT_FOUND``, ...) and
  entrypoint (``REST`` or ``GRPC``). (TF Serving's counter has no ``_total`` suffix;
  prometheus_client adds it to every counter, as current Prometheus naming asks.)
* ``:tensorflow:serving:request_latency{model_name, API, entrypoint}``: a histogram of
  request latency in microseconds, ``API`` being ``predict``, ``classify``, ``regress``,
  ``metadata`` or ``status``.
"""

from __future__ import annotations

import prometheus_client

prometheus_client.disable_created_metrics()  # TF Serving has no *_created series

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
PATH = "/monitoring/prometheus/metrics"

# 10 us .. ~10 s, roughly x2.5 per bucket
_BUCKETS = (10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
            250_000, 500_000, 1_000_000, 2_500_000, 10_000_000, float("inf"))


class ServerMetrics:
    """Request counters and latency histograms in a registry of their own."""

    def __init__(self):
        self.registry = prometheus_client.CollectorRegistry(auto_describe=True)
        self.requests = prometheus_client.Counter(
            ":tensorflow:serving:request_count", "Requests by model, status and entrypoint.",
            ["model_name", "status", "entrypoint"], registry=self.registry)
        self.latency = prometheus_client.Histogram(
            ":tensorflow:serving:request_latency", "Request latency in microseconds.",
            ["model_name", "API", "entrypoint"], buckets=_BUCKETS, registry=self.registry)

    def observe(self, model_name, api, entrypoint, status, seconds):
        """Count one finished request and its latency (``seconds`` of wall time)."""
        self.requests.labels(model_name or "", status, entrypoint).inc()
        self.latency.labels(model_name or "", api, entrypoint).observe(seconds * 1e6)

    def exposition(self):
        """The Prometheus text exposition (bytes)."""
        return prometheus_client.generate_latest(self.registry)
