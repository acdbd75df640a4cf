"""The one settings object: defaults, then an optional TOML file, then ``DLS_*`` variables.

Every setting is declared once here, with its type and limits, so a bad value stops the
server at start-up with one line naming the key, instead of failing later on a request.
The README's configuration table is checked against this class by a test.
"""

from __future__ import annotations

import base64
import binascii
import difflib
from collections.abc import Mapping
from enum import StrEnum
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from dls.problems import problems_of

__all__ = [
    "KEY_FORMAT",
    "ConfigError",
    "KeyType",
    "LogFormat",
    "Settings",
    "is_secret_key",
    "load_settings",
    "unknown_variables",
]

ENV_PREFIX = "DLS_"
# The test suite's and the benchmarks' own variables, which the servers they start inherit.
RESERVED_PREFIXES = ("DLS_TEST_", "DLS_BENCH_")


class KeyType(StrEnum):
    """Key algorithm of the generated server certificate.

    ECDSA P-256 halves the handshake cost of RSA-2048; ``both`` serves an RSA chain too,
    for phones whose TLS stacks only know RSA (OpenSSL picks by the client's signature
    algorithms).
    """

    ECDSA = "ecdsa"
    RSA = "rsa"
    BOTH = "both"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class Settings(BaseSettings):
    """Effective configuration of one server process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
        frozen=True,
    )

    data_dir: Path = Field(
        default=Path("var"), description="Directory for the SQLite database and runtime files."
    )
    certs_dir: Path = Field(
        default=Path("certs"), description="Directory for the CAs, server and device-CA keys."
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL (sqlite+aiosqlite or postgresql+asyncpg; the bare dialect "
        "names mean them); empty means the SQLite file data_dir/dls.sqlite3.",
    )
    hostnames: list[str] = Field(
        default_factory=lambda: ["localhost"],
        description="Host names phones use; they go into the server certificate's SANs.",
    )
    server_key_type: KeyType = Field(
        default=KeyType.ECDSA, description="Generated server key: ecdsa, rsa or both."
    )
    server_cert_file: Path | None = Field(
        default=None, description="Operator-supplied server certificate chain (PEM)."
    )
    server_key_file: Path | None = Field(
        default=None, description="Key for server_cert_file (PEM)."
    )
    device_bind: str = Field(default="0.0.0.0", description="Address of the device listeners.")  # noqa: S104 - phones must reach it
    device_port: int = Field(
        default=18443, ge=1, le=65535, description="Device listener (client certificate optional)."
    )
    device_client_certificates: bool = Field(
        default=True,
        description="Ask for a client certificate on the device listener (mutual TLS). Off: "
        "no certificate is asked for, so a phone's factory certificate from a CA not in "
        "certs/vendor-ca/ cannot fail the handshake; phones prove themselves with Digest.",
    )
    secure_port: int = Field(
        default=18444, ge=1, le=65535, description="Secure device listener (client cert required)."
    )
    public_device_url: str = Field(
        default="",
        pattern=r"^(https://[^/\s]+)?$",
        description="https://host[:port] phones use for the device listener; default "
        "https://<first hostname>:<device_port>. Set it behind NAT or a load balancer.",
    )
    admin_bind: str = Field(default="127.0.0.1", description="Address of the admin listener.")
    admin_port: int = Field(default=8443, ge=1, le=65535, description="Admin listener.")
    workers: int = Field(
        default=1, ge=1, le=64, description="Processes sharing the ports (SO_REUSEPORT)."
    )
    admin_process: bool = Field(
        default=True,
        description="Serve the admin listener from a process of its own beside the workers, "
        "so the admin API answers promptly while phones keep the workers busy; false: "
        "every worker serves all three listeners (one process with workers = 1).",
    )
    shutdown_timeout: float = Field(
        default=10.0, gt=0, le=300, description="Seconds in-flight requests get on SIGTERM."
    )
    idle_timeout: float = Field(
        default=75.0,
        gt=0,
        le=3600,
        description="Seconds a connection may go without a complete request head, from "
        "its TLS handshake or its previous answer; then it is closed.",
    )
    body_timeout: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Seconds a request body (WPI message, upload, admin JSON) may take to "
        "arrive; then 408 and the connection is closed. A firmware image import may take "
        "longer as a whole, but not for one of its 1 MiB pieces.",
    )
    send_timeout: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Seconds a firmware download may wait for the client to take the next "
        "64 KiB of the image; then the connection is closed.",
    )
    mdns_enabled: bool = Field(default=True, description="Advertise _dls._tcp.local. via mDNS.")
    mdns_interfaces: list[str] = Field(
        default_factory=list, description="Addresses to advertise on; empty means all."
    )
    mdns_instance: str = Field(
        default="dls", min_length=1, max_length=63, description="mDNS service instance name."
    )
    log_format: LogFormat = Field(default=LogFormat.TEXT, description="text or json.")
    log_level: str = Field(default="INFO", description="Python logging level name.")
    access_log: bool = Field(default=True, description="One structured line per request.")
    ledger_retention_days: int = Field(
        default=90,
        ge=0,
        le=3650,
        description="Days a fetch stays in the provisioning ledger; 0 keeps every one.",
    )
    render_cache_entries: int = Field(
        default=100_000,
        ge=0,
        le=10_000_000,
        description="Rendered device files kept per worker (about 2.5 KB each).",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Base64 AES-256 key for secrets at rest; else certs_dir/secret.key.",
    )
    firmware_dir: Path | None = Field(
        default=None,
        description="Firmware image store (shared by every instance); default data_dir/firmware.",
    )
    firmware_catalog_dir: Path | None = Field(
        default=None, description="Firmware manifests (*.toml); default the shipped catalog."
    )
    firmware_max_image_size: int = Field(
        default=2 * 1024**3, ge=1, description="Largest firmware image accepted, in bytes."
    )
    firmware_url_ttl: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        le=90 * 24 * 3600,
        description="Seconds a firmware download URL stays valid (between 1x and 2x this).",
    )
    firmware_accel_redirect: str = Field(
        default="",
        pattern=r"^(/[^\s?#]*/)?$",
        description="Internal location of a front web server that serves the image store "
        "(X-Accel-Redirect); empty: dls sends the bytes itself.",
    )
    firmware_rollout_interval: float = Field(
        default=10.0, gt=0, le=3600, description="Seconds between rollout engine steps."
    )

    @field_validator("device_bind", "admin_bind")
    @classmethod
    def _is_address(cls, value: str) -> str:
        ip_address(value)
        return value

    @field_validator("mdns_interfaces")
    @classmethod
    def _are_addresses(cls, value: list[str]) -> list[str]:
        for item in value:
            ip_address(item)
        return value

    @field_validator("hostnames")
    @classmethod
    def _hostnames(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one host name is needed")
        for name in value:
            if not name or len(name) > 253 or any(c.isspace() for c in name):
                raise ValueError(f"not a host name: {name!r}")
        return value

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        """One of the two drivers dls runs on; the bare dialect names mean them."""
        if not value:
            return value
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("not a database URL") from None
        driver = _DRIVERS.get(url.drivername)
        if driver is None:
            raise ValueError(
                f"dls runs on sqlite+aiosqlite or postgresql+asyncpg, not {url.drivername!r}"
            )
        return url.set(drivername=driver).render_as_string(hide_password=False)

    @field_validator("secret_key")
    @classmethod
    def _key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not is_secret_key(value.get_secret_value()):
            raise ValueError(KEY_FORMAT)
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value

    @property
    def device_url(self) -> str:
        """Where phones reach the device listener, without a trailing slash."""
        return self.public_device_url or f"https://{self.hostnames[0]}:{self.device_port}"

    @property
    def effective_firmware_dir(self) -> Path:
        return self.firmware_dir or self.data_dir / "firmware"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'dls.sqlite3'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest priority first: command-line overrides, environment, TOML file, defaults.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
KEY_FORMAT = "must be 32 random bytes in base64 (openssl rand -base64 32)"


def is_secret_key(text: str | bytes) -> bool:
    """Whether ``text`` is a key for secrets at rest: 32 bytes (AES-256) in base64."""
    try:
        return len(base64.b64decode(text.strip(), validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


class ConfigError(Exception):
    """A setting is invalid; the message is one line per problem, naming the key."""


def make_directory(path: Path, setting: str) -> Path:
    """``path``, created if missing; a ConfigError naming ``setting`` if it cannot be (a
    missing or read-only mount, no permission): a setting to fix, not a traceback."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot create {path}: {exc.strerror or exc}") from None
    return path


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from defaults, ``config_file``, the environment and ``overrides``."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file}: not found")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=config_file)

    try:
        loaded = _FromFile(**overrides) if config_file else Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except ValueError as exc:  # TOML syntax errors surface as tomllib.TOMLDecodeError
        raise ConfigError(f"config file {config_file}: {exc}") from None
    # Hand out the plain class so the object pickles into worker processes.
    return Settings.model_construct(**dict(loaded))


def _describe(exc: ValidationError) -> str:
    return "\n".join(
        f"setting '{problem.where or 'settings'}': {problem.message}"
        for problem in problems_of(exc, unknown="unknown setting")
    )


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One line per ``DLS_*`` variable that names no setting, with the one it may mean.

    The environment source reads the variables of known settings and passes over the rest,
    so a misspelt one (``DLS_DEVICE_PROT``) left its default in force without a word. A TOML
    file refuses an unknown key; the environment only warns, because a shell carries
    variables for other programs too, and dls's own tests and benchmarks hand theirs
    (``RESERVED_PREFIXES``) to the servers they start.
    """
    known = sorted(f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields)
    lines = []
    for variable in sorted(environ):
        name = variable.upper()  # the source matches names without regard to case
        if not name.startswith(ENV_PREFIX) or name.startswith(RESERVED_PREFIXES):
            continue
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1)
        meant = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"environment variable {variable} is not a setting, ignored{meant}")
    return lines
