"""Vendor profiles: the shipped ones load, and malformed ones fail at load, clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from dls.provisioning.files.profiles import ProfileError, ProfileSet, load_profile, load_profiles
from dls.provisioning.files.vocabulary import FileRole, FileScope, FormatFamily, LineKey

EXPECTED_FAMILIES = {
    "yealink": FormatFamily.KEY_VALUE,
    "poly": FormatFamily.XML_ATTRIBUTES,
    "snom": FormatFamily.XML_ELEMENTS,
    "grandstream": FormatFamily.P_VALUES,
    "cisco": FormatFamily.FLAT_PROFILE,
    "gigaset": FormatFamily.GIGASET_PROVISIONING,
    "fanvil": FormatFamily.FANVIL_XML,
}

# A small valid profile; each failure test breaks one thing in it.
VALID = """
schema = 1
vendor = "acme"
display_name = "Acme"
mac_case = "lower"
firmware_key = "fw.url"
firmware_location = "image-url"

[format]
family = "key-value"
header = "#!acme"
include_line = 'include "{file}"'

[[user_agents]]
name = "phone"
pattern = '^Acme (?P<model>[A-Z0-9]+) (?P<version>[0-9.]+)'

[[files]]
name = "device-config"
template = "{mac}.cfg"
scope = "device"
role = "config"

[[models]]
name = "A1"
lines = 2

[mappings.default.global]
ntp_server_1 = "ntp.1"

[mappings.default.line]
sip_user = "line.{line}.user"
transport = { key = "line.{line}.transport", values = { udp = "0", tcp = "1", tls = "2" } }
"""


def write(tmp_path: Path, text: str, name: str = "acme.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_shipped_profile_loads(profiles: ProfileSet) -> None:
    assert {profile.vendor: profile.family for profile in profiles} == EXPECTED_FAMILIES


def test_brief_models_are_validated(profiles: ProfileSet) -> None:
    assert profiles["cisco"].model("SPA112") and profiles["cisco"].model("SPA122")
    assert profiles["gigaset"].model("N870 IP PRO")
    for name in ("HT801", "HT802", "HT812"):
        assert profiles["grandstream"].model(name)
    assert profiles["fanvil"].model("x5u-pro") is profiles["fanvil"].model(
        "X5U"
    )  # aliases, any case
    # Spellings differing in case, spaces, hyphens or underscores name the same model.
    for spelling in ("VVX 450", "vvx-450", "VVX_450", "VVX450"):
        assert profiles["poly"].model(spelling) is profiles["poly"].model("VVX450")
    assert profiles["yealink"].model("SIP-T46U") is profiles["yealink"].model("t46u")
    assert profiles["yealink"].model("T46") is None


def test_ata_port_counts(profiles: ProfileSet) -> None:
    ports = {m.name: (m.lines, m.fxs_ports) for m in profiles["grandstream"].models if m.fxs_ports}
    assert ports == {"HT801": (1, 1), "HT802": (2, 2), "HT812": (2, 2)}


def test_grandstream_second_port_and_second_account_blocks_differ(profiles: ProfileSet) -> None:
    """HT802 port 2 is P7xx, GXP account 2 is P4xx (reference §4): kept apart."""
    grandstream = profiles["grandstream"]
    ata = grandstream.mapping_for(grandstream.model("HT802"))  # type: ignore[arg-type]
    phone = grandstream.mapping_for(grandstream.model("GXP2135"))  # type: ignore[arg-type]
    keys = {
        name: {key: entries[0].key for key, entries in mapping.line_entries(2).items()}
        for name, mapping in (("ata", ata), ("phone", phone))
    }
    assert keys["ata"][LineKey.PASSWORD] == "P734"
    assert keys["ata"][LineKey.REGISTRAR_HOST_PORT] == "P747"
    assert keys["ata"][LineKey.TRANSPORT] == "P830"
    assert keys["phone"][LineKey.PASSWORD] == "P406"
    assert keys["phone"][LineKey.REGISTRAR_HOST_PORT] == "P402"
    assert ata.line_entries(1)[LineKey.PASSWORD][0].key == "P34"


def test_every_vendor_has_a_device_config(
    profiles: ProfileSet,
) -> None:
    for profile in profiles:
        roles = {(spec.scope, spec.role) for spec in profile.files}
        assert (FileScope.DEVICE, FileRole.CONFIG) in roles, profile.vendor


def test_valid_sample_loads(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, VALID))
    assert profile.vendor == "acme"
    assert profile.model("a1") is not None


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('display_name = "Acme"', 'display_name = "Acme"\ncolour = "red"', "colour: unknown key"),
        ("schema = 1", "schema = 2", "schema"),
        ('family = "key-value"', 'family = "morse"', "family"),
        ("(?P<model>[A-Z0-9]+)", "(?P<model>[A-Z0-9]+", "pattern"),
        ("(?P<model>[A-Z0-9]+)", "(?P<serial>[A-Z0-9]+)", "unknown group"),
        ("(?P<model>[A-Z0-9]+)", "([A-Z0-9]+)", "needs a (?P<model>"),
        ('template = "{mac}.cfg"', 'template = "device.cfg"', "must contain {mac}"),
        ('scope = "device"', 'scope = "common"', "cannot contain {mac}"),
        ('template = "{mac}.cfg"', 'template = "{serial}.cfg"', "unknown field"),
        ('template = "{mac}.cfg"', 'template = "../{mac}.cfg"', "'..'"),
        ('role = "config"', 'role = "firmware"', "not supported by key-value"),
        ('role = "config"', 'role = "boot"', "boot files, and only they"),
        ("lines = 2", 'lines = 2\nmapping = "other"', "no mapping 'other'"),
        ("lines = 2", "lines = 0", "greater than or equal to 1"),
        ('ntp_server_1 = "ntp.1"', 'ntp_server_1 = "ntp key"', "not a key-value key"),
        ('ntp_server_1 = "ntp.1"', 'ntp_srv = "ntp.1"', "ntp_srv"),
        ('ntp_server_1 = "ntp.1"', 'ntp_server_1 = "ntp.{line}"', "unknown field"),
        (
            'ntp_server_1 = "ntp.1"',
            'vlan_enabled = "vlan.on"',
            "values must cover ['false', 'true']",
        ),
        ('ntp_server_1 = "ntp.1"', 'dst_start = "dst.start"', "does not apply to a transition"),
        (
            'ntp_server_1 = "ntp.1"',
            'time_zone = { key = "tz", convert = "zone-table" }',
            "[time_zones]",
        ),
        (
            'ntp_server_1 = "ntp.1"',
            'time_zone = { key = "tz", convert = "month" }',
            "does not apply",
        ),
        (
            'ntp_server_1 = "ntp.1"',
            'ntp_server_1 = { key = "n", const = "1", format = "{value}" }',
            "excludes",
        ),
        (
            'ntp_server_1 = "ntp.1"',
            'ntp_server_1 = { key = "n", format = "{other}" }',
            "unknown field",
        ),
        (', tls = "2" }', " }", "values must cover ['tcp', 'tls', 'udp']"),
        ('sip_user = "line.{line}.user"', 'sip_user = "line.user"', "needs {line} or {provider}"),
        ('sip_user = "line.{line}.user"', 'sip_user = "p.{provider}.user"', "would merge lines"),
        ('firmware_key = "fw.url"', 'firmware_key = "fw url"', "not a key-value key"),
        (
            'name = "A1"',
            'name = "B2"\nlines = 1\n\n[[models]]\nname = "A1"\naliases = ["b-2"]',
            "duplicate name or alias ['b2']",
        ),
        ('name = "A1"', 'name = "A1"\nfile_id = "a/1"', "file_id"),
    ],
)
def test_malformed_profile_fails_at_load_naming_file_and_problem(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    text = str(caught.value)
    assert text.startswith("profile acme.toml: ")
    assert message in text


def test_line_blocks_must_cover_every_line_of_a_model(tmp_path: Path) -> None:
    start = VALID.index("[mappings.default.line]")
    text = VALID[:start] + '[[mappings.default.line_blocks]]\nsip_user = "user.one"\n'

    with pytest.raises(ProfileError, match="keys for 1 line"):
        load_profile(write(tmp_path, text))


def test_file_id_templates_need_a_model_with_a_file_id(tmp_path: Path) -> None:
    text = VALID.replace(
        'role = "config"',
        'role = "config"\n\n[[files]]\nname = "model"\n'
        'template = "m{file_id}.cfg"\nscope = "common"\nrole = "config"',
    )
    with pytest.raises(ProfileError, match="no model has a file_id"):
        load_profile(write(tmp_path, text))


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"profile acme\.toml: .*line"):
        load_profile(write(tmp_path, VALID + "\n[[broken\n"))


def test_vendor_must_match_the_file_name(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="must match the file name"):
        load_profile(write(tmp_path, VALID, name="other.toml"))


def test_load_profiles_fails_on_the_first_bad_file(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    write(
        tmp_path,
        VALID.replace('vendor = "acme"', 'vendor = "bad"').replace("lines = 2", "lines = -1"),
        "bad.toml",
    )
    with pytest.raises(ProfileError, match=r"profile bad\.toml"):
        load_profiles(tmp_path)


def test_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no profiles"):
        load_profiles(tmp_path)
