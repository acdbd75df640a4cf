"""``dls tenant|user|partner``: the operator's commands, next to a running server.

A running server commits many times a second; each command takes SQLite's write lock
before it reads, so it waits for the server's writers instead of failing with
"database is locked" when one commits between its read and its write.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from dls.cli import main


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "dls.sqlite3"
    monkeypatch.setenv("DLS_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    monkeypatch.setenv("DLS_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DLS_CERTS_DIR", str(tmp_path / "certs"))
    assert main(["db", "upgrade"]) == 0
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(list(args)) == 0, capsys.readouterr().err
    return capsys.readouterr().out.strip()


def test_a_reseller_and_its_customer_are_set_up_from_the_command_line(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    reseller = _run(
        capsys,
        "tenant",
        "create",
        "--kind",
        "reseller",
        "--name",
        "Acme",
        "--country",
        "de",
        "--eu",
    )
    customer = _run(
        capsys,
        "tenant",
        "create",
        "--kind",
        "customer",
        "--name",
        "Bolt",
        "--country",
        "DE",
        "--eu",
    )
    assert "reseller role enabled, Partner Admin ID ACME4711" in _run(
        capsys, "partner", "enable", "--tenant", reseller, "--partner-admin-id", "ACME4711"
    )
    assert f"{customer} reseller ACME4711" in _run(
        capsys, "partner", "link", "--tenant", customer, "--reseller-id", "ACME4711"
    )
    created = _run(
        capsys,
        "user",
        "create",
        "--tenant",
        reseller,
        "--username",
        "pa.acme",
        "--role",
        "partner_admin",
        "--paid",
    )
    assert created.startswith("user pa.acme (id ") and " password " in created
    listed = _run(capsys, "tenant", "list")
    assert f"{reseller}  reseller" in listed and "reseller:ACME4711" in listed
    assert f"{customer}  customer" in listed and "linked:ACME4711" in listed
    with sqlite3.connect(database) as db:
        actions = {row[0] for row in db.execute("SELECT action FROM audit_entries")}
    assert {"tenant.create", "tenant.reseller_role", "tenant.partner_ids", "user.create"} <= actions


def test_a_command_waits_for_the_servers_writer_instead_of_failing(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    writer = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")  # the server's ledger, mid-transaction

    def server_commits() -> None:
        writer.execute(
            "INSERT INTO login_failures (username, address, at) "
            "VALUES ('someone', '192.0.2.1', '2026-11-26 12:00:00')"
        )
        writer.execute("COMMIT")

    # It commits a change while the command waits: a command that had read before it
    # asked for the lock would find its read outdated, and fail.
    timer = threading.Timer(0.5, server_commits)
    timer.start()
    try:
        tenant = _run(
            capsys, "tenant", "create", "--kind", "customer", "--name", "Late", "--country", "DE"
        )
    finally:
        timer.join()
        writer.close()
    assert len(tenant) == 12


def test_an_unknown_tenant_is_a_clear_error(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["partner", "enable", "--tenant", "nosuchtenant"]) == 2
    assert "no tenant nosuchtenant" in capsys.readouterr().err


def test_input_the_api_refuses_is_refused_here_too(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    base = ["tenant", "create", "--kind", "customer", "--country", "de"]
    assert main([*base, "--name", ""]) == 2
    assert capsys.readouterr().err == "dls: --name: String should have at least 1 character\n"
    assert main([*base, "--name", "x" * 201]) == 2
    assert "--name: String should have at most 200 characters" in capsys.readouterr().err
    tenant = _run(capsys, *base, "--name", "  Acme GmbH ")
    assert main(["user", "create", "--tenant", tenant, "--username", "a b"]) == 2
    assert capsys.readouterr().err.startswith("dls: --username: String should match pattern")
    # Nothing was stored by the refused commands; the name is stored as the API stores it.
    listed = _run(capsys, "tenant", "list", "--kind", "customer").splitlines()
    assert listed == [f"{tenant}  customer    DE    Acme GmbH"]
