"""Cut dls's file-poll handler short at one layer, for ``bench/dls_layers.sh``.

Python imports ``sitecustomize`` at start-up from ``sys.path``; with this directory on a
variant server's PYTHONPATH and ``DLS_BENCH_LAYER`` set, the handler stops after the
layer named and answers a fixed body, so the difference between two layers in one run
is what that layer costs a poll, on keep-alive and on new connections alike:

- ``framework``: dls's listener, TLS context, middleware, access log and metrics; the
  handler answers at once (what bare aiohttp lacks);
- ``detect``: and vendor, model and MAC detected from path and User-Agent;
- ``facts``: and the device's facts read (the poll's one query);
- ``auth``: and the requester authenticated (Digest, certificate or MAC-only);
- ``answer``: and the firmware offer, the file from the render cache and the answer with
  its ETag, as dls sends it.

What dls itself adds to ``answer`` is the ledger: its entry and its batched writes.
Benchmark code only: nothing in ``dls`` knows this exists.
"""

from __future__ import annotations

import os

LAYERS = ("framework", "detect", "facts", "auth", "answer")


def _install(layer: str) -> None:
    from aiohttp import web

    from dls.provisioning.files import handler

    if layer not in LAYERS:
        raise SystemExit(f"DLS_BENCH_LAYER={layer!r}: one of {', '.join(LAYERS)}")
    depth = LAYERS.index(layer)
    # As long as the fleet's rendered files on average (bench/dls_files.py sets it).
    body = b"x" * int(os.environ.get("DLS_BENCH_BODY_BYTES", "2000"))

    async def get(self: handler.FileProvisioner, request: web.Request) -> web.StreamResponse:
        if depth >= 1:
            detection = self._detector.detect(request.match_info["path"], handler._agent(request))
            if isinstance(detection, handler.Rejection) or detection.mac is None:
                return web.Response(status=404)
            if depth >= 2:
                facts = await self._facts(detection.mac)
                if depth >= 3:
                    refusal = self._trust.check(request, detection, facts)
                    if refusal is not None:
                        return refusal.response
                    if depth >= 4:
                        assert facts is not None
                        offer = await self._offer(facts, detection)
                        rendered = await self._device_file(facts, detection, offer)
                        if rendered is None:
                            return web.Response(status=404)
                        return self._answer(request, rendered, detection)
        return web.Response(body=body, content_type="text/plain")

    handler.FileProvisioner.get = get  # type: ignore[method-assign]


_layer = os.environ.get("DLS_BENCH_LAYER")
if _layer:
    _install(_layer)
