"""A command that cannot reach its database says so in one line, not a driver's traceback.

What an operator meets first on a new machine or after a move: PostgreSQL not running
yet, a database or role not created, a typo in the host name, a SQLite file whose
directory cannot be made. ``dls serve`` ends the same way as every other command.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import socket
import sqlite3
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from dls.cli import main
from dls.db.migrate import head_revision
from dls.db.unavailable import DatabaseTimeout, connection_failure
from dls.devices.layers import SECRET_MARKER
from dls.secretbox import SecretBox, generate_key_file
from tests.conftest import TEST_DATABASE_URL


@pytest.fixture(autouse=True)
def _directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLS_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DLS_CERTS_DIR", str(tmp_path / "certs"))


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ended(capsys: pytest.CaptureFixture[str], *command: str, code: int) -> str:
    assert main(list(command)) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]  # after any log lines the command wrote


def test_nothing_listening_is_one_line_with_the_url_and_no_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    monkeypatch.setenv("DLS_DATABASE_URL", f"postgresql://dls:s3cret@127.0.0.1:{port}/dls")
    for command in (["db", "current"], ["tenant", "list"], ["serve", "--no-mdns"]):
        said = _ended(capsys, *command, code=1)
        url = f"postgresql+asyncpg://dls:***@127.0.0.1:{port}/dls"
        assert said.startswith(f"dls: cannot connect to the database {url}: "), said
        assert "s3cret" not in said


def test_a_sqlite_file_that_cannot_be_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-directory").mkdir()
    monkeypatch.setenv("DLS_DATABASE_URL", f"sqlite:///{tmp_path / 'a-directory'}")
    said = _ended(capsys, "db", "upgrade", code=2)
    assert said == (
        f"dls: database_url: cannot open {tmp_path / 'a-directory'}: unable to open database file"
    )


def test_a_sqlite_directory_that_cannot_be_made_is_a_setting_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("DLS_DATABASE_URL", f"sqlite:///{tmp_path / 'a-file' / 'dls.sqlite3'}")
    said = _ended(capsys, "db", "upgrade", code=2)
    assert said.startswith(f"dls: database_url: cannot create {tmp_path / 'a-file'}: "), said


@pytest.mark.db
def test_a_postgresql_database_that_does_not_exist(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if not TEST_DATABASE_URL.startswith("postgresql"):
        pytest.skip("PostgreSQL only: DLS_TEST_DATABASE_URL names it")
    url = make_url(TEST_DATABASE_URL)
    missing = url.set(database="dls_no_such_database")
    monkeypatch.setenv("DLS_DATABASE_URL", missing.render_as_string(hide_password=False))
    said = _ended(capsys, "db", "current", code=1)
    assert said.endswith('database "dls_no_such_database" does not exist'), said


def test_a_schema_from_a_newer_dls_is_refused_in_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An upgrade rolled back: the database was migrated by a version this one predates.
    Alembic's "Can't locate revision" was a traceback, and ``dls serve`` ended in it."""
    path = tmp_path / "dls.sqlite3"
    monkeypatch.setenv("DLS_DATABASE_URL", f"sqlite:///{path}")
    assert main(["db", "upgrade"]) == 0
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    for command in (["db", "upgrade"], ["serve", "--no-mdns"]):
        said = _ended(capsys, *command, code=2)
        assert said.startswith(
            "dls: the database schema is at revision 9999, which this dls does not know "
            f"(its newest is {head_revision()}): a newer dls upgraded it"
        ), said


def _store_a_secret(path: Path, box: SecretBox) -> None:
    """A system settings document with one encrypted value, as the admin API stores it."""
    data = {"admin_password": {SECRET_MARKER: box.encrypt("4321", "system:-")}}
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute(
            "INSERT INTO settings_documents (scope, scope_key, data, revision, updated_at) "
            "VALUES ('system', '-', ?, 1, '2026-11-27 00:00:00')",
            (json.dumps(data),),
        )


def test_secrets_under_a_key_that_is_not_configured_stop_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A certs directory lost or not carried over to a new host: a new key used to be
    made in silence, and no phone's file rendered after."""
    path = tmp_path / "dls.sqlite3"
    monkeypatch.setenv("DLS_DATABASE_URL", f"sqlite:///{path}")
    assert main(["db", "upgrade"]) == 0
    written_with = SecretBox(secrets.token_bytes(32))
    _store_a_secret(path, written_with)
    key_file = tmp_path / "certs" / "secret.key"

    # dls init runs the checks dls serve starts with, and returns.
    said = _ended(capsys, "init", code=2)
    assert said == (
        f"dls: {key_file} is missing, and the database holds secrets encrypted under key "
        f"{written_with.key_id}: restore that file (or set DLS_SECRET_KEY); a new key "
        "cannot open them; if no copy of it is left, `dls secrets forget-lost` removes them"
    )
    assert not key_file.exists()  # none made that would then be taken for the right one

    other = SecretBox(generate_key_file(key_file))
    said = _ended(capsys, "init", code=2)
    assert said == (
        f"dls: the database's secrets are encrypted under key {written_with.key_id}, and "
        f"the configured key ({key_file}) is {other.key_id}: configure the key this "
        "database was written with; if no copy of it is left, `dls secrets forget-lost` "
        "removes them"
    )


def test_an_unfinished_key_rotation_is_pointed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "dls.sqlite3"
    monkeypatch.setenv("DLS_DATABASE_URL", f"sqlite:///{path}")
    assert main(["db", "upgrade"]) == 0
    key_file = tmp_path / "certs" / "secret.key"
    generate_key_file(key_file)
    pending = key_file.with_name("secret.key.new")
    _store_a_secret(path, SecretBox(generate_key_file(pending)))
    said = _ended(capsys, "init", code=2)
    assert said.endswith(
        f"; {pending} holds it (a key rotation did not finish): move it to {key_file}"
    )


def test_secrets_whose_key_is_lost_for_good_can_be_forgotten_and_the_start_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The way out of the refusal above when no copy of the key is left: count, remove
    with --yes, set them again; the document's revision moves, so phones fetch anew."""
    path = tmp_path / "dls.sqlite3"
    monkeypatch.setenv("DLS_DATABASE_URL", f"sqlite:///{path}")
    assert main(["db", "upgrade"]) == 0
    _store_a_secret(path, SecretBox(secrets.token_bytes(32)))
    capsys.readouterr()

    assert main(["secrets", "forget-lost"]) == 1
    assert capsys.readouterr().out.strip() == (
        "no key at hand opens 0 device Digest passwords, 1 settings values, 0 deployment "
        "PINs; run again with --yes to remove them"
    )
    key_file = tmp_path / "certs" / "secret.key"
    assert not key_file.exists()  # counting made no key, and removed nothing:
    assert "secret.key is missing" in _ended(capsys, "init", code=2)

    assert main(["secrets", "forget-lost", "--yes"]) == 0
    key = SecretBox(base64.b64decode(key_file.read_bytes()))
    assert capsys.readouterr().out.strip() == (
        "removed 0 device Digest passwords, 1 settings values, 0 deployment PINs; set them "
        f"again: they will be under key {key.key_id}"
    )
    with contextlib.closing(sqlite3.connect(path)) as connection:
        data, revision = connection.execute(
            "SELECT data, revision FROM settings_documents"
        ).fetchone()
        audited = connection.execute(
            "SELECT action, object_type, object_id FROM audit_entries WHERE action != 'bootstrap'"
        ).fetchall()
    assert (json.loads(data), revision) == ({}, 2)
    assert audited == [("secrets.forget_lost", "settings_document", "system:-")]
    assert main(["init"]) == 0


@pytest.mark.db
async def test_instances_starting_together_migrate_one_at_a_time(
    database_url: str, tmp_path: Path
) -> None:
    """Two servers started at once on a new database (or ``dls db upgrade`` beside a
    starting one) each ran the same migrations: the second failed on PostgreSQL with a
    duplicate type and on SQLite with "database is locked"."""
    env = {
        **os.environ,
        "DLS_DATABASE_URL": database_url,
        "DLS_DATA_DIR": str(tmp_path / "var"),
        "DLS_CERTS_DIR": str(tmp_path / "certs"),
    }
    commands = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dls", "db", "upgrade", env=env, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    results = [await command.communicate() for command in commands]
    errors = [stderr.decode() for command, (_, stderr) in zip(commands, results, strict=True)]
    assert [command.returncode for command in commands] == [0, 0, 0], errors


def test_only_a_failure_to_connect_is_called_one() -> None:
    """A statement that waited too long had connected: it stays a traceback, not
    "cannot connect"."""
    assert connection_failure(DatabaseTimeout("point read")) is None
    assert connection_failure(TimeoutError("connect")) == "connect"
    assert connection_failure(ValueError("a bug")) is None
