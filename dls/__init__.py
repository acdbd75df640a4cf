"""dls: a provisioning server for desk phones and ATAs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dls")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
