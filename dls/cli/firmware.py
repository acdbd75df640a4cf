"""``dls firmware import|list``: the operator's image store from the shell.

Import runs the same checks as the upload endpoint (``dls.firmware.imports``): validated
models, the catalog's SHA-256 and size where published, one image per model and version.
It is audited as an operator action with no acting user, like the other shell commands.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sqlalchemy import select

from dls import audit
from dls.config import Settings
from dls.db.engine import WRITER, create_engine, session_factory
from dls.db.types import utcnow
from dls.devices.catalog import load_catalog as load_models
from dls.firmware.blobstore import BlobStore
from dls.firmware.catalog import DEFAULT_CATALOG_DIR, CatalogError, load_catalog
from dls.firmware.imports import (
    ImportRefused,
    ImportRequest,
    audit_changes,
    check_request,
    file_chunks,
    receive_image,
    record_image,
)
from dls.firmware.models import FirmwareImage
from dls.server import run_async


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    firmware = commands.add_parser("firmware", help="firmware images").add_subparsers(
        dest="action", required=True
    )
    do = firmware.add_parser("import", help="import an image into the store")
    do.add_argument("file", type=Path, help="the image as the vendor ships it")
    do.add_argument("--vendor", required=True)
    do.add_argument(
        "--model", action="append", required=True, help="a validated model; repeat for more"
    )
    do.add_argument("--version", required=True, help="as the device reports it")
    do.add_argument("--file-name", help="name in download URLs (default: the catalog's)")
    do.set_defaults(handler=firmware_import)
    listing = firmware.add_parser("list", help="list imported images")
    listing.add_argument("--vendor")
    listing.set_defaults(handler=firmware_list)


def firmware_import(settings: Settings, args: argparse.Namespace) -> int:
    if not args.file.is_file():
        print(f"dls: {args.file}: not a file", file=sys.stderr)
        return 2
    try:
        catalog = load_catalog(settings.firmware_catalog_dir or DEFAULT_CATALOG_DIR)
        checked = check_request(
            ImportRequest(args.vendor, args.version, tuple(args.model), args.file_name),
            catalog,
            load_models().lookup,
        )
    except (CatalogError, ImportRefused) as error:
        print(f"dls: {error}", file=sys.stderr)
        return 2
    outcome: list[int] = []

    async def go() -> None:
        engine = create_engine(settings.effective_database_url)
        store = BlobStore(
            settings.effective_firmware_dir, max_size=settings.firmware_max_image_size
        )
        try:
            stored = await receive_image(
                store, checked, file_chunks(args.file), max_size=settings.firmware_max_image_size
            )
            # Recorded in a transaction of its own that takes SQLite's write lock up front,
            # as a running server's writers do, instead of failing if one wrote meanwhile.
            async with session_factory(engine)() as session, session.begin():
                await session.connection(execution_options=WRITER)
                result = await record_image(session, checked, stored, None, utcnow())
                image = result.image
                if result.created:
                    audit.record(
                        session,
                        actor_user_id=None,
                        actor_tenant_id=None,
                        target_tenant_id=None,
                        via=audit.Via.OPERATOR,
                        action="firmware.image.import",
                        object_type="firmware_image",
                        object_id=image.id,
                        changes=audit_changes(image),
                    )
                print(
                    f"image {image.id} {image.vendor} {image.version} "
                    f"{','.join(image.models)} {image.size} bytes sha256 {image.sha256} "
                    f"({image.checksum_source}{'' if result.created else ', already imported'})"
                )
                outcome.append(image.id)
        except ImportRefused as error:
            print(f"dls: {error}", file=sys.stderr)
        finally:
            await engine.dispose()

    run_async(go())
    return 0 if outcome else 1


def firmware_list(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> None:
        engine = create_engine(settings.effective_database_url)
        try:
            async with session_factory(engine)() as session:
                statement = select(FirmwareImage).order_by(FirmwareImage.id)
                if args.vendor:
                    statement = statement.where(FirmwareImage.vendor == args.vendor)
                for image in await session.scalars(statement):
                    print(
                        f"{image.id}  {image.vendor:<12} {image.version:<24} "
                        f"{','.join(image.models):<30} {image.size:>11}  {image.sha256[:16]}  "
                        f"{image.checksum_source}  {image.file_name}"
                    )
        finally:
            await engine.dispose()

    run_async(go())
    return 0
