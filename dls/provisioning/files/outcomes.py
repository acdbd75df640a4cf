"""What became of each request for a device file, counted per vendor for the operator.

A phone answered 404 learns nothing about why (``trust``); the operator should: whether
phones are refused because their credentials are wrong, because nobody registered them,
or because they ask for a file dls does not serve is what a provisioning dashboard needs
during a roll-out, and the access log's status codes cannot tell those apart.
"""

from __future__ import annotations

import functools
from enum import StrEnum
from typing import Any, TypeVar

from dls.metrics import DEVICE_FILES
from dls.provisioning.files.detect import Rejection

__all__ = ["Outcome", "counted", "rejected"]

NO_VENDOR = "none"

_Response = TypeVar("_Response")


class Outcome(StrEnum):
    SERVED = "served"  # 200, the file (HEAD included)
    NOT_MODIFIED = "not_modified"  # 304: If-None-Match held the current ETag
    CHALLENGED = "challenged"  # 401: no credentials, or a stale nonce
    REFUSED = "refused"  # 404: a registered device that did not prove itself
    UNKNOWN = "unknown"  # 404: no registered device with that MAC (or a retired one)
    # 404: nothing to render for it: a model not validated, settings that failed to
    # render (the log says why), or a file of another vendor than the device's.
    UNRENDERED = "unrendered"
    NOT_SERVED = "not_served"  # 404: a file of the vendor that dls does not serve
    UNRECOGNISED = "unrecognised"  # 404: no profile knows the User-Agent or path
    AMBIGUOUS = "ambiguous"  # 404: the path fits several vendors, the User-Agent none
    MAC_MISMATCH = "mac_mismatch"  # 404: path and User-Agent name different MACs
    MODEL_MISMATCH = "model_mismatch"  # 404: another model's file
    UPLOADED = "uploaded"  # 204: a Poly upload stored
    TOO_LARGE = "too_large"  # 413: an upload over the limit
    INCOMPLETE = "incomplete"  # an upload's body refused: too slow, or cut short


def counted(vendor: str | None, outcome: Outcome, response: _Response) -> _Response:
    """``response``, counted under ``vendor`` and ``outcome``."""
    _counter(vendor or NO_VENDOR, outcome).inc()
    return response


def rejected(rejection: Rejection, response: _Response) -> _Response:
    """``response`` to a request detection rejected, counted under the vendor its
    evidence names, when it names one."""
    vendors = {evidence.vendor for evidence in rejection.evidence}
    vendor = vendors.pop() if len(vendors) == 1 else None
    return counted(vendor, Outcome(rejection.reason.value.replace("-", "_")), response)


@functools.lru_cache(maxsize=256)
def _counter(vendor: str, outcome: Outcome) -> Any:
    return DEVICE_FILES.labels(vendor, outcome.value)
