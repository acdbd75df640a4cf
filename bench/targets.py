"""A server under test, as the load generator sees it, and the check run before loading it.

A target is a base URL, a request list file, the CA that signed its certificate and,
optionally, the PID whose process tree is charged the CPU. The baselines are targets the
harness starts itself; dls (or any server) is a target started by someone else.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from loadgen import Request, read_request_list

PREFLIGHT_SAMPLES = 5
PREFLIGHT_TIMEOUT_S = 10.0


class PreflightError(Exception):
    """The target does not answer the request list correctly; loading it would mislead."""


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    base_url: str  # https://host:port, no path: paths come from the request list
    request_list: Path
    ca_file: Path
    pid: int | None = None
    # path -> body for servers that must return the generated files byte for byte.
    expected: Mapping[str, bytes] | None = None
    baseline: bool = False


@dataclass(frozen=True, slots=True)
class PreflightInfo:
    """What the sampled responses looked like; recorded with the results."""

    tls_version: str
    cipher: str
    server: str
    mean_body_bytes: float


def split_base_url(url: str) -> tuple[str, int]:
    """Host and port of an https base URL; anything but a bare origin is an error."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"base URL must be https://host:port with no path, not {url!r}")
    return parts.hostname, parts.port or 443


def preflight(target: Target) -> PreflightInfo:
    """GET a few requests of the list, verifying the chain against the CA file.

    wrk verifies nothing and counts a 404 as a (fast) request, so a wrong path list or an
    unknown device would produce impressive, meaningless figures without this check.
    """
    requests = read_request_list(target.request_list)
    if not requests:
        raise PreflightError(f"{target.name}: request list {target.request_list} is empty")
    step = max(1, len(requests) // PREFLIGHT_SAMPLES)
    samples = requests[::step][:PREFLIGHT_SAMPLES]
    host, port = split_base_url(target.base_url)
    context = ssl.create_default_context(cafile=str(target.ca_file))
    connection = http.client.HTTPSConnection(
        host, port, context=context, timeout=PREFLIGHT_TIMEOUT_S
    )
    try:
        responses = [_fetch(connection, target, request) for request in samples]
        version, cipher = connection.sock.version() or "", connection.sock.cipher()
    except (OSError, ssl.SSLError, http.client.HTTPException) as error:
        raise PreflightError(f"{target.name}: {target.base_url}: {error}") from error
    finally:
        connection.close()
    sizes = [size for size, _ in responses]
    cipher_name = cipher[0] if cipher else ""
    return PreflightInfo(version, cipher_name, responses[0][1], sum(sizes) / len(sizes))


def _fetch(
    connection: http.client.HTTPSConnection, target: Target, request: Request
) -> tuple[int, str]:
    """Body size and Server header of one request; raises unless it is a 200 as expected."""
    connection.request("GET", request.path, headers=dict(request.headers))
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise PreflightError(
            f"{target.name}: GET {request.path} answered {response.status}, not 200"
        )
    if target.expected is not None and target.expected.get(request.path) != body:
        raise PreflightError(f"{target.name}: GET {request.path} returned other bytes")
    return len(body), response.getheader("Server", "")
