from pathlib import Path

import pytest
from pydantic import SecretStr

from dls.cli import main
from dls.config import ConfigError, KeyType, load_settings


def test_defaults_match_the_documented_ports() -> None:
    settings = load_settings()
    assert (settings.device_port, settings.secure_port, settings.admin_port) == (18443, 18444, 8443)
    assert settings.effective_database_url.startswith("sqlite+aiosqlite:///")


def test_file_then_environment_then_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "dls.toml"
    config.write_text(
        'device_port = 19000\nadmin_port = 19001\nworkers = 3\nhostnames = ["a.example"]\n'
    )
    monkeypatch.setenv("DLS_ADMIN_PORT", "19002")
    monkeypatch.setenv("DLS_WORKERS", "4")
    settings = load_settings(config, workers=5)
    assert settings.device_port == 19000  # file beats default
    assert settings.admin_port == 19002  # environment beats file
    assert settings.workers == 5  # command line beats environment
    assert settings.hostnames == ["a.example"]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            "device_port = 70000",
            "setting 'device_port': Input should be less than or equal to 65535",
        ),
        ("admin_bind = 'localhost'", "setting 'admin_bind'"),
        ("server_key_type = 'dsa'", "setting 'server_key_type'"),
        ("colour = 'blue'", "setting 'colour': unknown setting"),
        ("hostnames = []", "setting 'hostnames'"),
        ("log_level = 'loud'", "setting 'log_level'"),
        ("device_port = ", "config file"),
        (
            "database_url = 'mysql://dls@db/dls'",
            "setting 'database_url': dls runs on sqlite+aiosqlite or postgresql+asyncpg, "
            "not 'mysql'",
        ),
        ("database_url = '::'", "setting 'database_url': not a database URL"),
        (
            "secret_key = 'c2hvcnQ='",  # 5 bytes
            "setting 'secret_key': must be 32 random bytes in base64 (openssl rand -base64 32)",
        ),
        ("secret_key = 'not base64!'", "setting 'secret_key': must be 32 random bytes"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, toml: str, expected: str) -> None:
    config = tmp_path / "dls.toml"
    config.write_text(toml + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://dls:p%40ss@db:5433/dls", "postgresql+asyncpg://dls:p%40ss@db:5433/dls"),
        ("postgres://dls@db/dls", "postgresql+asyncpg://dls@db/dls"),
        ("postgresql+asyncpg://dls@db/dls", "postgresql+asyncpg://dls@db/dls"),
        ("sqlite:////srv/dls/dls.sqlite3", "sqlite+aiosqlite:////srv/dls/dls.sqlite3"),
    ],
)
def test_database_urls_name_the_driver_dls_runs_on(given: str, used: str) -> None:
    """The URL an operator copies from elsewhere (no driver, or Heroku's ``postgres://``)
    means the driver dls runs on, password and port kept."""
    assert load_settings(database_url=given).effective_database_url == used


def test_bad_environment_value_stops_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DLS_SECURE_PORT", "zero")
    assert main(["config", "show"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dls: setting 'secure_port':")
    assert len(err.splitlines()) == 1


def test_misspelt_environment_variable_is_named_with_the_setting_it_may_mean(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DLS_DEVICE_PROT", "19443")
    monkeypatch.setenv("DLS_NO_SUCH_THING", "1")
    monkeypatch.setenv("dls_workers", "3")  # read without regard to case: a setting
    monkeypatch.setenv("DLS_TEST_DATABASE_URL", "sqlite://")  # the suite's own
    monkeypatch.setenv("DLS_BENCH_LAYER", "detect")  # the benchmarks' own
    assert main(["config", "show"]) == 0
    out, err = capsys.readouterr()
    assert "device_port = 18443" in out  # the misspelt value changed nothing
    assert "workers = 3" in out
    warnings = [line.split(" [-] ", 1)[1] for line in err.splitlines()]
    assert warnings == [
        "environment variable DLS_DEVICE_PROT is not a setting, ignored;"
        " did you mean DLS_DEVICE_PORT?",
        "environment variable DLS_NO_SUCH_THING is not a setting, ignored",
    ]


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.toml")


def test_config_show_masks_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DLS_SECRET_KEY", "c3VwZXItc2VjcmV0LWtleS1tYXRlcmlhbC0zMmJ5dGU=")
    monkeypatch.setenv("DLS_DATABASE_URL", "postgresql+asyncpg://dls:hunter2@db.example/dls")
    monkeypatch.setenv("DLS_SERVER_KEY_TYPE", "both")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "c3VwZXIt" not in out and "hunter2" not in out
    assert 'secret_key = "***"' in out
    assert 'server_key_type = "both"' in out
    assert load_settings().server_key_type is KeyType.BOTH
    assert isinstance(load_settings().secret_key, SecretStr)


@pytest.mark.parametrize(
    ("setting", "command"),
    [("DLS_DATA_DIR", ["serve", "--no-mdns"]), ("DLS_CERTS_DIR", ["certs", "show"])],
)
def test_a_directory_that_cannot_be_made_is_named_with_its_setting(
    setting: str,
    command: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A missing or read-only mount, say: a FileNotFoundError traceback before."""
    monkeypatch.setenv("DLS_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DLS_CERTS_DIR", str(tmp_path / "certs"))
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(setting, str(tmp_path / "a-file" / "dls"))
    assert main(command) == 2
    name = setting.removeprefix("DLS_").lower()
    said = capsys.readouterr().err.strip()
    assert said == f"dls: {name}: cannot create {tmp_path / 'a-file' / 'dls'}: Not a directory"
