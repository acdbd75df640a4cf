"""Every renderer, read back through its sim parser: hostile values survive the round trip."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dls.devices.settings import DeviceSettings
from dls.provisioning.files.profiles import FileSpec, ModelSpec, ProfileSet, VendorProfile
from dls.provisioning.files.render import RenderError, RenderRequest, render, vendor_values
from dls.provisioning.files.vocabulary import FileRole, FileScope
from dls.sim.formats import FormatError, parse_file, parse_settings

from .support import HOSTILE_NAME, HOSTILE_PASSWORD, MAC, hostile_settings

BASE_URL = "https://prov.example.net/dls/"
FIRMWARE = "https://prov.example.net/fw/image.bin"

# One vendor key per vendor that must carry the hostile display name and password of line 1.
LINE_ONE_KEYS = {
    "yealink": ("account.1.display_name", "account.1.password"),
    "poly": ("reg.1.displayName", "reg.1.auth.password"),
    "snom": ("user_realname[1]", "user_pass[1]"),
    "grandstream": ("P3", "P34"),
    "cisco": ("Display_Name_1_", "Password_1_"),
    "gigaset": ("SipAccount.00001.DisplayName", "SipAccount.00001.AuthPassword"),
    "fanvil": ("sip.line[1].DisplayName", "sip.line[1].RegisterPswd"),
}


def request(
    profile: VendorProfile,
    model: ModelSpec,
    spec: FileSpec,
    settings: DeviceSettings,
    **overrides: object,
) -> RenderRequest:
    values: dict[str, object] = {"mac": MAC, "firmware_url": FIRMWARE, "base_url": BASE_URL}
    values.update(overrides)
    return RenderRequest(profile, model, spec, settings, **values)  # type: ignore[arg-type]


def rendered_files(
    profiles: ProfileSet, role: FileRole
) -> Iterator[tuple[VendorProfile, ModelSpec, FileSpec]]:
    for profile in profiles:
        for model in profile.models:
            for spec in profile.files:
                if spec.role is role and profile.file_name(spec, model, MAC) is not None:
                    yield profile, model, spec


def config_cases(profiles: ProfileSet) -> list[tuple[VendorProfile, ModelSpec, FileSpec]]:
    return list(rendered_files(profiles, FileRole.CONFIG))


def assert_round_trip(
    profile: VendorProfile, rendered: bytes, expected: dict[str, str]
) -> dict[str, str]:
    parsed = parse_settings(profile, rendered)
    missing = {key: value for key, value in expected.items() if parsed.get(key) != value}
    assert not missing, f"{profile.vendor}: not read back unchanged: {missing}"
    extra = set(parsed) - set(expected)
    if profile.vendor == "poly":  # the renderer adds Poly's .set flags
        assert all(key.endswith(".set") for key in extra), extra
    else:
        assert not extra, extra
    return parsed


def test_every_config_file_round_trips_with_hostile_values(profiles: ProfileSet) -> None:
    settings = hostile_settings()
    cases = config_cases(profiles)
    assert {profile.vendor for profile, _, _ in cases} == set(LINE_ONE_KEYS)
    for profile, model, spec in cases:
        job = request(profile, model, spec, settings)
        assert_round_trip(profile, render(job), vendor_values(job).values)


@pytest.mark.parametrize("vendor", sorted(LINE_ONE_KEYS))
def test_hostile_line_values_reach_the_device_file(profiles: ProfileSet, vendor: str) -> None:
    profile = profiles[vendor]
    spec = next(
        s for s in profile.files if s.scope is FileScope.DEVICE and s.role is FileRole.CONFIG
    )
    model = next(m for m in profile.models if profile.file_name(spec, m, MAC))
    parsed = parse_settings(profile, render(request(profile, model, spec, hostile_settings())))
    name_key, password_key = LINE_ONE_KEYS[vendor]
    assert parsed[name_key] == HOSTILE_NAME
    assert parsed[password_key] == HOSTILE_PASSWORD


def test_common_files_never_hold_secrets_lines_or_raw_keys(profiles: ProfileSet) -> None:
    secrets = (
        "line-one-S3CRET-value",
        "second-line-secret",
        "admin-S3CRET-value",
        "raw-S3CRET-value",
    )
    lines = {
        1: {"sip_user": "201", "password": secrets[0], "registrar": "sip.example.net"},
        2: {"sip_user": "202", "password": secrets[1], "registrar": "sip.example.net"},
    }
    raw_key = {vendor: "x.secret" for vendor in LINE_ONE_KEYS} | {"grandstream": "P9999"}
    settings = hostile_settings(
        lines=lines,
        admin_password=secrets[2],
        raw={vendor: {key: secrets[3]} for vendor, key in raw_key.items()},
    )
    seen = 0
    for role in (FileRole.CONFIG, FileRole.BOOT, FileRole.FIRMWARE):
        for profile, model, spec in rendered_files(profiles, role):
            if spec.scope is not FileScope.COMMON:
                continue
            seen += 1
            output = render(request(profile, model, spec, settings, mac=None))
            for secret in (*secrets, "201", "sip.example.net"):
                assert secret.encode() not in output, (profile.vendor, spec.name, secret)
    assert seen >= 10


def test_boot_files_list_the_next_files(profiles: ProfileSet) -> None:
    settings = hostile_settings()
    yealink = profiles["yealink"]
    t46u = yealink.model("T46U")
    assert t46u is not None
    device_boot = parse_file(
        yealink, render(request(yealink, t46u, yealink.file("device-boot"), settings))
    )
    assert device_boot.includes == ("y000000000108.cfg", f"{MAC}.cfg")
    common_boot = parse_file(
        yealink, render(request(yealink, t46u, yealink.file("common-boot"), settings, mac=None))
    )
    assert common_boot.includes == ("y000000000108.cfg",)

    poly = profiles["poly"]
    vvx = poly.model("VVX_400")
    assert vvx is not None
    master = parse_file(poly, render(request(poly, vvx, poly.file("master"), settings, mac=None)))
    assert master.includes == ("[PHONE_MAC_ADDRESS]-dls.cfg",)
    assert master.settings["APP_FILE_PATH"] == FIRMWARE


def test_firmware_locations(profiles: ProfileSet) -> None:
    settings = hostile_settings()
    snom = profiles["snom"]
    d785 = snom.model("D785")
    assert d785 is not None
    firmware = parse_settings(
        snom, render(request(snom, d785, snom.file("firmware"), settings, mac=None))
    )
    assert firmware == {"firmware": FIRMWARE}
    config = parse_settings(snom, render(request(snom, d785, snom.file("device-config"), settings)))
    assert config["firmware_status"] == BASE_URL + "snomD785-firmware.xml"

    grandstream = profiles["grandstream"]
    ht802 = grandstream.model("HT802")
    assert ht802 is not None
    directory = "https://prov.example.net/fw/grandstream"
    gs = parse_settings(
        grandstream,
        render(
            request(
                grandstream,
                ht802,
                grandstream.file("device-config"),
                settings,
                firmware_url=directory,
            )
        ),
    )
    assert (gs["P192"], gs["P212"]) == ("prov.example.net/fw/grandstream", "2")

    gigaset = profiles["gigaset"]
    n870 = gigaset.models[0]
    parsed = parse_settings(
        gigaset, render(request(gigaset, n870, gigaset.file("device-config"), settings))
    )
    assert (parsed["firmware@url"], parsed["firmware@version"]) == (FIRMWARE, "2.65.0")


def test_grandstream_device_file_names_its_mac_and_ht802_port_two(profiles: ProfileSet) -> None:
    grandstream = profiles["grandstream"]
    ht802 = grandstream.model("HT802")
    assert ht802 is not None
    parsed = parse_file(
        grandstream,
        render(request(grandstream, ht802, grandstream.file("device-config"), hostile_settings())),
    )
    assert parsed.meta == {"mac": MAC}
    assert (parsed.settings["P734"], parsed.settings["P735"], parsed.settings["P830"]) == (
        "second-line-secret",
        "202",
        "0",
    )
    assert parsed.settings["P130"] == "2"  # port 1 is TLS
    assert "P406" not in parsed.settings  # the GXP block is not the ATA's


def test_gigaset_registers_a_handset_per_line(profiles: ProfileSet) -> None:
    gigaset = profiles["gigaset"]
    parsed = parse_file(
        gigaset,
        render(
            request(gigaset, gigaset.models[0], gigaset.file("device-config"), hostile_settings())
        ),
    )
    assert parsed.meta["oper/add_hs/00001/hs.RegStatus"] == "ToReg"
    assert "oper/add_hs/00002" in parsed.meta
    assert parsed.settings["SipAccount.00002.ProviderId"] == "2"  # line 2 has another server set


def test_poly_device_keys_carry_set_flags(profiles: ProfileSet) -> None:
    poly = profiles["poly"]
    vvx = poly.model("VVX400")
    assert vvx is not None
    parsed = parse_settings(
        poly, render(request(poly, vvx, poly.file("device-config"), hostile_settings()))
    )
    assert parsed["device.set"] == "1"
    assert parsed["device.auth.localAdminPassword.set"] == "1"
    assert parsed["device.net.vlanId"] == "100"


def test_rendering_is_deterministic(profiles: ProfileSet) -> None:
    for profile, model, spec in config_cases(profiles):
        job = request(profile, model, spec, hostile_settings())
        assert render(job) == render(job)


def test_pre_conditions_are_checked(profiles: ProfileSet) -> None:
    yealink = profiles["yealink"]
    t46u = yealink.model("T46U")
    assert t46u is not None
    settings = hostile_settings()
    with pytest.raises(RenderError, match="MAC"):
        render(request(yealink, t46u, yealink.file("device-config"), settings, mac=None))
    with pytest.raises(RenderError, match="MAC"):
        render(
            request(yealink, t46u, yealink.file("device-config"), settings, mac="00:15:65:F4:29:A4")
        )
    poly = profiles["poly"]
    vvx = poly.model("VVX400")
    assert vvx is not None
    with pytest.raises(RenderError, match="never rendered"):
        render(request(poly, vvx, poly.file("upload-app-log"), settings))
    with pytest.raises(RenderError, match="not in profile"):
        render(request(yealink, vvx, yealink.file("device-config"), settings))


def test_xml_families_refuse_keys_xml_cannot_name(profiles: ProfileSet) -> None:
    """A raw key outside the family grammar is left out and reported, never written."""
    cisco = profiles["cisco"]
    spa = cisco.model("SPA122")
    assert spa is not None
    settings = hostile_settings(raw={"cisco": {"Bad Key<": "x", "Good_Key": "y"}})
    job = request(cisco, spa, cisco.file("device-config"), settings)
    parsed = parse_settings(cisco, render(job))
    assert parsed["Good_Key"] == "y"
    assert [o.key for o in vendor_values(job).omitted] == ["Bad Key<"]


SAFE_TEXT = st.text(
    # Exactly what the settings model accepts (check_text).
    alphabet=st.characters(
        blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\ufffe\uffff"
    ),
    min_size=1,
    max_size=30,
).filter(lambda text: text == text.strip())


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=SAFE_TEXT, password=SAFE_TEXT)
def test_any_valid_text_round_trips_in_every_family(
    profiles: ProfileSet, name: str, password: str
) -> None:
    """Property: whatever the settings model accepts, every family writes and reads back."""
    settings = hostile_settings(
        lines={
            1: {
                "sip_user": name,
                "display_name": name,
                "password": password,
                "registrar": "sip.example.net",
            }
        },
        admin_password=password,
    )
    for vendor in LINE_ONE_KEYS:
        profile = profiles[vendor]
        spec = next(
            s for s in profile.files if s.scope is FileScope.DEVICE and s.role is FileRole.CONFIG
        )
        model = next(m for m in profile.models if profile.file_name(spec, m, MAC))
        job = request(profile, model, spec, settings)
        parsed = assert_round_trip(profile, render(job), vendor_values(job).values)
        assert parsed[LINE_ONE_KEYS[vendor][1]] == password


@pytest.mark.parametrize(
    ("vendor", "data"),
    [
        ("cisco", b"<flat-profile><a>1</a>"),
        ("cisco", b"<other/>"),
        (
            "snom",
            b'<!DOCTYPE x [<!ENTITY e "boom">]>'
            b"<settings><phone-settings><a>&e;</a></phone-settings></settings>",
        ),
        ("yealink", b"no header\nkey = value\n"),
        ("yealink", b"#!version:1.0.0.1\njust words\n"),
        ("grandstream", b"<gs_provision/>"),
    ],
)
def test_sim_parsers_reject_malformed_files(profiles: ProfileSet, vendor: str, data: bytes) -> None:
    with pytest.raises(FormatError):
        parse_file(profiles[vendor], data)
