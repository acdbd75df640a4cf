"""Prometheus metrics, per process or aggregated over worker processes.

With ``--workers N`` the parent sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start,
so whichever worker answers ``/metrics`` reports the sum over all of them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["CONTENT_TYPE_LATEST", "REQUESTS", "REQUEST_SECONDS", "render"]

REQUESTS = Counter(
    "dls_http_requests_total", "HTTP requests answered", ["listener", "method", "status"]
)
REQUEST_SECONDS = Histogram(
    "dls_http_request_seconds",
    "Time from request head to response, by listener",
    ["listener"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)


def render() -> bytes:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
