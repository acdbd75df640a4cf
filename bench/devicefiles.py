"""Per-device configuration files that stand in for a fleet of phones.

The files mimic Yealink ``<mac>.cfg`` files of about 2 KB (the size a rendered per-device
config has), named by MAC in lower case as Yealink phones request them. Generation is
deterministic for a given seed, so ``--write-devices`` can export the same fleet for the
server under test to import before a run.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

FILE_SIZE_BYTES = 2048
# Real files differ a little in size (names, number of line keys); +-6 % keeps them ~2 KB.
FILE_SIZE_JITTER_BYTES = 128
# Yealink OUIs, so the names look like what the device listener will really see.
YEALINK_OUIS = ("001565", "805ec0", "805e0c", "249ad8")
# (model, firmware) pairs; the firmware's leading number names the common file (y0000…XX).
YEALINK_MODELS = (
    ("SIP-T46U", "108.86.0.20"),
    ("SIP-T54W", "96.86.0.100"),
    ("SIP-T33G", "124.86.0.40"),
    ("SIP-T58A", "58.86.0.20"),
)
FIRST_NAMES = ("Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hugo", "Ida", "Jan")
LAST_NAMES = ("Meier", "Schmidt", "Keller", "Weber", "Wagner", "Becker", "Hoffmann", "Koch")


@dataclass(frozen=True, slots=True)
class Device:
    """One simulated phone: its identity and the bytes its per-device file holds."""

    mac: str  # 12 lowercase hex digits
    model: str
    firmware: str
    content: bytes

    @property
    def file_name(self) -> str:
        return f"{self.mac}.cfg"

    @property
    def user_agent(self) -> str:
        # The Yealink UA carries the MAC as its last token; dls cross-checks it with the path.
        return f"Yealink {self.model} {self.firmware} {self.mac}"


def generate_devices(count: int, seed: int = 1) -> list[Device]:
    """Return ``count`` devices with unique MACs and ~2 KB configs, the same for a seed."""
    rng = random.Random(seed)
    macs: set[str] = set()
    devices: list[Device] = []
    while len(devices) < count:
        mac = rng.choice(YEALINK_OUIS) + f"{rng.getrandbits(24):06x}"
        if mac in macs:
            continue
        macs.add(mac)
        model, firmware = rng.choice(YEALINK_MODELS)
        target = FILE_SIZE_BYTES + rng.randint(-FILE_SIZE_JITTER_BYTES, FILE_SIZE_JITTER_BYTES)
        devices.append(Device(mac, model, firmware, _render_config(rng, mac, target)))
    return devices


def _render_config(rng: random.Random, mac: str, size: int) -> bytes:
    """Yealink-style key = value lines for one account, padded with line keys to ``size``."""
    extension = rng.randint(1000, 9999)
    name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    password = f"{rng.getrandbits(96):024x}"
    lines = [
        "#!version:1.0.0.1",
        f"## per-device configuration for {mac}",
        "account.1.enable = 1",
        f"account.1.label = {extension}",
        f"account.1.display_name = {name}",
        f"account.1.auth_name = {mac}-{extension}",
        f"account.1.user_name = {extension}",
        f"account.1.password = {password}",
        "account.1.sip_server.1.address = sip.customer-4711.example.net",
        "account.1.sip_server.1.port = 5061",
        "account.1.sip_server.1.transport_type = 2",
        "account.1.srtp_encryption = 2",
        "local_time.time_zone = +1",
        "local_time.time_zone_name = Germany(Berlin)",
        "local_time.ntp_server1 = ntp.example.net",
        f"static.security.user_password = admin:{rng.getrandbits(64):016x}",
    ]
    text = "\n".join(lines) + "\n"
    key = 1
    while len(text) < size:
        colleague = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        text += (
            f"linekey.{key}.type = 16\n"
            f"linekey.{key}.value = {rng.randint(1000, 9999)}\n"
            f"linekey.{key}.label = {colleague}\n"
        )
        key += 1
    return text[:size].rsplit("\n", 1)[0].encode() + b"\n"


def write_devices(devices: list[Device], directory: Path) -> Path:
    """Write each device's file into ``directory/files`` and a manifest beside it.

    ``devices.tsv`` (mac, file, model, firmware, user agent, size, sha256) is what a server
    under test needs to create the same fleet. Returns the directory holding the files.
    """
    files = directory / "files"
    files.mkdir(parents=True, exist_ok=True)
    manifest = ["mac\tfile\tmodel\tfirmware\tuser_agent\tsize\tsha256"]
    for device in devices:
        (files / device.file_name).write_bytes(device.content)
        fields = (
            device.mac,
            device.file_name,
            device.model,
            device.firmware,
            device.user_agent,
            str(len(device.content)),
            hashlib.sha256(device.content).hexdigest(),
        )
        manifest.append("\t".join(fields))
    (directory / "devices.tsv").write_text("\n".join(manifest) + "\n")
    return files
