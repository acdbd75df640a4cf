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
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = [
    "CONTENT_TYPE_LATEST",
    "DEVICE_FILES",
    "DROPPED",
    "REQUESTS",
    "REQUEST_SECONDS",
    "SERVER_CERTIFICATE_EXPIRY",
    "TLS_HANDSHAKES",
    "TLS_HANDSHAKE_FAILURES",
    "WPI_INTERACTIONS",
    "WPI_OPEN_INTERACTIONS",
    "WPI_REFUSED",
    "WPI_RETRY_AFTER",
    "render",
]

REQUESTS = Counter(
    "dls_http_requests_total", "HTTP requests answered", ["listener", "method", "status"]
)
REQUEST_SECONDS = Histogram(
    "dls_http_request_seconds",
    "Time from request head to response, by listener",
    ["listener"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)

# A boot storm as an operator watches it: interactions finished, phones turned away and
# what they were told, interactions open. Listener: "device" (18443) or "secure" (18444).
DEVICE_FILES = Counter(
    "dls_device_files_total",
    "Requests for device files under /prov/, by vendor and outcome (served, not_modified, "
    "challenged, refused, unknown, unrendered, not_served, unrecognised, ambiguous, "
    "mac_mismatch, model_mismatch; uploads: uploaded, too_large, incomplete)",
    ["vendor", "outcome"],
)
TLS_HANDSHAKES = Counter(
    "dls_tls_handshakes_total",
    "TLS handshakes by listener: started, and completed; the difference failed (or is "
    "under way), which no access line shows (dls.handshakes)",
    ["listener", "stage"],
)
TLS_HANDSHAKE_FAILURES = Counter(
    "dls_tls_handshake_failures_total",
    "TLS handshakes that failed, by listener and OpenSSL's reason (CERTIFICATE_VERIFY_FAILED, "
    "TLSV1_ALERT_UNKNOWN_CA, HTTP_REQUEST, ...; OTHER when it gives none); a client that "
    "goes away mid-handshake is not among them (dls.handshakes)",
    ["listener", "reason"],
)
DROPPED = Counter(
    "dls_buffer_dropped_total",
    "Entries dropped because a write-behind buffer was full, its database writes failing "
    "for long: ledger (fetch records) and firmware_downloads (download starts)",
    ["buffer"],
)
WPI_INTERACTIONS = Counter(
    "dls_wpi_interactions_total", "WPI interactions ended with CleanUp", ["listener"]
)
WPI_REFUSED = Counter(
    "dls_wpi_refused_total",
    "WPI requests answered 503 + Retry-After: a new interaction at the door (opening), a "
    "message of an open one (continuing), a message that kept losing a write race "
    "(conflict), or a database error (database)",
    ["listener", "reason"],
)
WPI_RETRY_AFTER = Histogram(
    "dls_wpi_retry_after_seconds",
    "Waits told to phones turned away at the door (their turns)",
    ["listener"],
    buckets=(5, 10, 15, 20, 30, 45, 60),
)
WPI_OPEN_INTERACTIONS = Gauge(
    "dls_wpi_open_interactions",
    "WPI interactions open (admitted, no CleanUp yet), as of the process's last WPI message",
    ["listener"],
    multiprocess_mode="livesum",
)

# The earliest any live process serves: a process whose reload failed keeps it down.
SERVER_CERTIFICATE_EXPIRY = Gauge(
    "dls_server_certificate_expiry_timestamp_seconds",
    "When the server certificate the listeners present expires (Unix time), per chain file",
    ["certificate"],
    multiprocess_mode="livemin",
)


def render() -> bytes:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
