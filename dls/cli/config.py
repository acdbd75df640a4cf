"""``dls config show``: the effective settings after file and environment, secrets masked."""

from __future__ import annotations

import argparse
import json

from pydantic import SecretStr
from sqlalchemy.engine import make_url

from dls.config import Settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("config", help="settings")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("show", help="print the effective settings").set_defaults(handler=show)


def show(settings: Settings, args: argparse.Namespace) -> int:
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            shown = '"***"' if value.get_secret_value() else '""'
        elif name == "database_url" and value:
            shown = json.dumps(_masked_url(value))
        elif value is None:
            shown = "# not set"
        else:
            shown = json.dumps(value, default=str)
        print(f"{name} = {shown}")
    print(f"# database: {_masked_url(settings.effective_database_url)}")
    return 0


def _masked_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
