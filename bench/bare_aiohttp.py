"""Bare aiohttp baseline: the same bytes from an in-memory dict, no application logic.

This is the ceiling for any aiohttp server on this machine: TLS, HTTP parsing and one dict
lookup. The gap between it and dls is what dls's own request path costs; the gap between
it and nginx is what Python costs. Workers are forked processes that each bind the port
with ``SO_REUSEPORT``, the process model of ``dls --workers N``. No access log, as nginx
runs with ``access_log off``.

Run by ``servers.start_bare_aiohttp``; prints ``ready <pid>`` once per listening worker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
from pathlib import Path

from aiohttp import web

FILES = web.AppKey("files", dict[str, bytes])


async def serve_file(request: web.Request) -> web.Response:
    body = request.app[FILES].get(request.path)
    if body is None:
        raise web.HTTPNotFound()
    return web.Response(body=body, content_type="text/plain")


def load_files(directory: Path) -> dict[str, bytes]:
    return {f"/{path.name}": path.read_bytes() for path in directory.iterdir() if path.is_file()}


def tls_context(certificate: Path, key: Path) -> ssl.SSLContext:
    # TLS 1.3 only, like the nginx baseline. Session tickets stay at Python's default:
    # num_tickets = 0 stalls clients without TCP_NODELAY ~40 ms per request (perf notes).
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(certificate, key)
    return context


async def run_worker(files: dict[str, bytes], port: int, context: ssl.SSLContext) -> None:
    app = web.Application()
    app[FILES] = files
    app.router.add_get("/{path:.*}", serve_file)
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=context, reuse_port=True)
    await site.start()
    print(f"ready {os.getpid()}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def worker_main(files: dict[str, bytes], args: argparse.Namespace) -> None:
    # The TLS context is built after the fork so no OpenSSL state is shared between workers.
    context = tls_context(args.certificate, args.key)
    try:
        import uvloop
    except ImportError:
        print("uvloop is not installed; running on asyncio", file=sys.stderr, flush=True)
        asyncio.run(run_worker(files, args.port, context))
    else:
        uvloop.run(run_worker(files, args.port, context))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--certificate", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    files = load_files(args.directory)
    if args.workers == 1:
        worker_main(files, args)
        return
    # Fork before any event loop exists; each child builds its own loop and socket.
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            worker_main(files, args)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
