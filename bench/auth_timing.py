"""Whether a requester can tell a registered MAC from an unknown one by timing.

The device path answers an unknown MAC and a registered one without valid credentials
alike (the same 401 challenge without credentials, the same 404 with wrong ones). This
measures what an attacker on the phones' network could: over one keep-alive TLS
connection, requests of these kinds interleaved at random, each timed from sending it to
having read its whole answer:

- ``unknown``: a Digest response for a MAC no tenant registered (404);
- ``wrong``: a registered MAC, a Digest response made with a wrong password (404);
- ``unknown-bare`` / ``known-bare``: no Authorization header (401 challenge);
- ``right``: a registered MAC with its password (200), for scale only.

The MACs rotate over a few hundred of each kind. For each pair that must not differ it
prints the difference of the medians with a 95 % bootstrap interval, and checks that the
two answers carry the same status and body. A difference of a few microseconds over
loopback is beyond what a network's jitter lets anyone resolve in practice; the figure to
look at is the interval against the spread of one kind.

    .venv/bin/python bench/auth_timing.py --samples 20000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import random
import re
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from dls_files import authorization, challenge_nonce
from dls_seed import Phone, seed
from dls_server import DlsInstance, init, new_instance, start_dls

from dls.secretbox import SecretBox

KINDS = ("unknown", "wrong", "unknown-bare", "known-bare", "right")
PAIRS = (("unknown", "wrong"), ("unknown-bare", "known-bare"))
_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000, help="phones seeded")
    parser.add_argument("--macs", type=int, default=200, help="MACs per kind, rotated")
    parser.add_argument("--samples", type=int, default=20000, help="requests per kind")
    parser.add_argument("--warmup", type=int, default=2000, help="requests not counted")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap rounds")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dls-auth-timing-") as root:
        instance = new_instance(Path(root) / "dls", "")
        init(instance)
        box = SecretBox(base64.b64decode((instance.certs / "secret.key").read_bytes().strip()))
        fleet = asyncio.run(seed(instance.effective_database_url, box, args.devices, args.seed))
        server = start_dls(instance, 1)
        try:
            known = fleet.phones[: args.macs]
            nonce = challenge_nonce(instance, known[0])
            requests = build_requests(known, nonce, args.macs, random.Random(args.seed))
            times = asyncio.run(measure(instance, requests, args))
        finally:
            server.stop()
    report(times, args)
    return 0


def build_requests(
    known: list[Phone], nonce: str, count: int, rng: random.Random
) -> dict[str, list[bytes]]:
    """Raw HTTP/1.1 requests per kind, the User-Agent naming the path's MAC as a Yealink
    phone's does."""
    taken = {phone.mac for phone in known}
    unknown: list[Phone] = []
    while len(unknown) < count:
        mac = "805ec0" + f"{rng.getrandbits(24):06x}"
        if mac not in taken:
            taken.add(mac)
            unknown.append(replace(known[0], device_id=0, mac=mac, digest_password="x" * 24))
    wrong = [replace(phone, digest_password=phone.digest_password[::-1]) for phone in known]

    def request(phone: Phone, credentials: bool) -> bytes:
        lines = [
            f"GET {phone.path} HTTP/1.1",
            "Host: 127.0.0.1",
            f"User-Agent: {phone.user_agent}",
        ]
        if credentials:
            lines.append(f"Authorization: {authorization(phone, nonce)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    return {
        "unknown": [request(phone, True) for phone in unknown],
        "wrong": [request(phone, True) for phone in wrong],
        "unknown-bare": [request(phone, False) for phone in unknown],
        "known-bare": [request(phone, False) for phone in known],
        "right": [request(phone, True) for phone in known],
    }


async def measure(
    instance: DlsInstance, requests: dict[str, list[bytes]], args: argparse.Namespace
) -> dict[str, list[float]]:
    """Microseconds per request and kind, over one connection, kinds in random order."""
    context = ssl.create_default_context(cafile=str(instance.ca_file))
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", instance.device_port, ssl=context, server_hostname="localhost"
    )
    rng = random.Random(args.seed + 1)
    order = [kind for kind in KINDS for _ in range(args.samples)]
    rng.shuffle(order)
    order = [rng.choice(KINDS) for _ in range(args.warmup)] + order
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    answers: dict[str, set[tuple[int, bytes]]] = {kind: set() for kind in KINDS}
    try:
        for index, kind in enumerate(order):
            batch = requests[kind]
            raw = batch[index % len(batch)]
            started = time.perf_counter_ns()
            writer.write(raw)
            answer = await read_answer(reader)
            elapsed = (time.perf_counter_ns() - started) / 1000
            if index >= args.warmup:
                times[kind].append(elapsed)
                answers[kind].add((answer.status, answer.body))
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    for first, second in PAIRS:
        if len(answers[first]) != 1 or answers[first] != answers[second]:
            raise SystemExit(f"{first} and {second} answered differently: {answers}")
    print(f"answers: {', '.join(f'{k} {sorted(s)[0][0]}' for k, s in answers.items())}")
    return times


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    found = _LENGTH.search(head)
    body = await reader.readexactly(int(found.group(1))) if found else b""
    return Answer(int(head.split(b" ", 2)[1]), body)


def report(times: dict[str, list[float]], args: argparse.Namespace) -> None:
    print(f"{'kind':<14}{'n':>8}{'p10':>9}{'p50':>9}{'p90':>9}{'p99':>9}  (us, send to last byte)")
    for kind in KINDS:
        values = sorted(times[kind])
        cut = statistics.quantiles(values, n=100)
        print(
            f"{kind:<14}{len(values):>8}{cut[9]:>9.1f}{statistics.median(values):>9.1f}"
            f"{cut[89]:>9.1f}{cut[98]:>9.1f}"
        )
    rng = random.Random(args.seed + 2)
    for first, second in PAIRS:
        a, b = times[first], times[second]
        difference = statistics.median(a) - statistics.median(b)
        rounds = sorted(
            _median_of_resample(a, rng) - _median_of_resample(b, rng) for _ in range(args.resamples)
        )
        low, high = rounds[int(0.025 * len(rounds))], rounds[int(0.975 * len(rounds)) - 1]
        spread = statistics.quantiles(b, n=4)
        print(
            f"{first} - {second}: median {difference:+.1f} us, 95 % interval "
            f"[{low:+.1f}, {high:+.1f}] us; interquartile range of {second} "
            f"{spread[2] - spread[0]:.1f} us"
        )


def _median_of_resample(values: list[float], rng: random.Random) -> float:
    return statistics.median(rng.choices(values, k=len(values)))


if __name__ == "__main__":
    sys.exit(main())
