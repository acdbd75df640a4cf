"""Firmware: what exists, what we hold, and who gets it.

- ``catalog``: the vendor manifests in ``firmware_catalog/`` (data, not code), validated at
  load time and looked up by (vendor, model, version). Metadata only.
- ``blobstore``: the image bytes, stored once per SHA-256 in a directory that several
  server processes (and hosts) share; streamed in with a size limit and an optional
  expected digest, and located by digest for serving.

Import names from the submodules; this package re-exports nothing.
"""

__all__: list[str] = []
