"""Firmware: what exists, what we hold, and who gets it.

- ``catalog``: the vendor manifests in ``firmware_catalog/`` (data, not code), validated at
  load time and looked up by (vendor, model, version). Metadata only.
- ``blobstore``: the image bytes, stored once per SHA-256 in a directory that several
  server processes (and hosts) share; streamed in with a size limit and an optional
  expected digest, and located by digest for serving.
- ``imports``: an image checked against the catalog, stored and recorded.
- ``models``, ``versions``, ``targets``: the tables, version comparison, target versions.
- ``delivery``: which version a device should run now; ``tokens``: its signed download
  URL; ``serving``: the download handler.
- ``engine`` (pure), ``rollouts``, ``progress``, ``driver``: staged rollouts.
- ``runtime``: one process's firmware services, and the calls other delivery channels
  (the WPI session) make into them.

Import names from the submodules; this package re-exports nothing.
"""

__all__: list[str] = []
