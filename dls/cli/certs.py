"""``dls certs show``: what the listeners present and trust, and when it expires."""

from __future__ import annotations

import argparse
import datetime as dt

from dls.config import Settings
from dls.pki import Unreadable, describe, ensure_pki


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("certs", help="certificates")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("show", help="subject, SANs, expiry, fingerprint").set_defaults(handler=show)


def show(settings: Settings, args: argparse.Namespace) -> int:
    """Exit code 1 if a file holds no certificate: the listeners would not start on it."""
    pki = ensure_pki(settings)
    paths = [pki.ca_cert, *(chain for chain, _ in pki.server_chains), pki.device_ca_cert]
    status = 0
    for info in describe([*paths, *pki.vendor_ca_files()]):
        if isinstance(info, Unreadable):
            print(f"{info.path}\n  unreadable  {info.reason}")
            status = 1
            continue
        index, count = info.position
        print(f"{info.path}" + (f"  ({index} of {count})" if count > 1 else ""))
        print(f"  subject  {info.subject}")
        print(f"  issuer   {info.issuer}")
        if info.sans:
            print(f"  SANs     {', '.join(info.sans)}")
        print(f"  expires  {info.not_after.isoformat()}  ({days_left(info.not_after)})")
        print(f"  SHA-256  {info.sha256}")
    return status


def days_left(moment: dt.datetime, now: dt.datetime | None = None) -> str:
    """How far off an expiry is, in whole days: what a renewal is planned by."""
    left = moment - (now or dt.datetime.now(dt.UTC))
    return f"in {left.days} days" if left >= dt.timedelta(0) else "EXPIRED"
