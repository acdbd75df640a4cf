"""Detection of vendor, model, firmware and MAC from real User-Agents and paths."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dls.provisioning.files.detect import (
    Detection,
    Detector,
    EvidenceSource,
    Rejection,
    RejectReason,
    detect,
    normalise_mac,
)
from dls.provisioning.files.profiles import ProfileSet

SNOM_UA = (
    "Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 2010.12-00004-g9ba52f5"
    " 000413922D24 SXM:0 UXM:0)"
)

# (path, User-Agent, vendor, model, firmware version, MAC, file spec) from the reference.
REAL_REQUESTS = [
    (
        "/prov/249ad888d0f4.boot",
        "Yealink SIP-T46U 108.86.0.90 24:9a:d8:88:d0:f4",
        "yealink",
        "T46U",
        "108.86.0.90",
        "249ad888d0f4",
        "device-boot",
    ),
    (
        "/prov/y000000000058.cfg",
        "Yealink SIP-T56A  58.80.0.25 001565f429a4",
        "yealink",
        "T56A",
        "58.80.0.25",
        "001565f429a4",
        "model-config",
    ),
    (
        "/y000000000000.boot",
        "Yealink SIP-T38G  38.70.0.125",
        "yealink",
        "T38G",
        "38.70.0.125",
        None,
        "common-boot",
    ),
    (
        "/y000000000000.boot",
        "Yealink SIP VP-T49G 51.80.0.10",
        "yealink",
        "T49G",
        "51.80.0.10",
        None,
        "common-boot",
    ),
    (
        "/y000000000000.boot",
        "Yealink W60B 77.85.0.20",
        "yealink",
        "W60B",
        "77.85.0.20",
        None,
        "common-boot",
    ),
    (
        "/0004f2abcdef-dls.cfg",
        "FileTransport PolycomVVX-VVX_400-UA/4.1.4.7430 Type/Application",
        "poly",
        "VVX400",
        "4.1.4.7430",
        "0004f2abcdef",
        "device-config",
    ),
    (
        "/000000000000.cfg",
        "FileTransport PolycomVVX-VVX_400-UA/4.1.4.7430 Type/Application",
        "poly",
        "VVX400",
        "4.1.4.7430",
        None,
        "master",
    ),
    (
        "/snomD785-000413922D24.htm",
        SNOM_UA,
        "snom",
        "D785",
        "10.1.33.33",
        "000413922d24",
        "device-config",
    ),
    (
        "/snomD785.htm",
        "Mozilla/4.0 (compatible; snomD785-SIP 8.7.5.35 1.1.5-IFX-05.01.12)",
        "snom",
        "D785",
        "8.7.5.35",
        None,
        "model-config",
    ),
    (
        "/cfg000b828aa872.xml",
        "Grandstream Model HW GXP2135 SW 1.0.7.97 DevId 000b828aa872",
        "grandstream",
        "GXP2135",
        "1.0.7.97",
        "000b828aa872",
        "device-config",
    ),
    (
        "/cfght801.xml",
        "Grandstream Model HW HT801 V1.1A SW 1.0.17.5 DevId c074ad273a10",
        "grandstream",
        "HT801",
        "1.0.17.5",
        "c074ad273a10",
        "model-config",
    ),
    (
        "/cfgc074ad273a10",
        "Grandstream Model HW HT801 V1.1A SW 1.0.17.5 DevId c074ad273a10",
        "grandstream",
        "HT801",
        "1.0.17.5",
        "c074ad273a10",
        "device-binary",
    ),
    (
        "/spa122.cfg",
        "Cisco/SPA122-1.3.5(004p_XU001)",
        "cisco",
        "SPA122",
        "1.3.5(004p_XU001)",
        None,
        "model-config",
    ),
    (
        "/0002fdff2103.xml",
        "Cisco/SPA508G-7.4.4 (0002FDFF2103)(CBT141400UK)",
        "cisco",
        "SPA508G",
        "7.4.4",
        "0002fdff2103",
        "device-config",
    ),
    (
        "/7c2f80e0d605.xml",
        "Gigaset N870 IP PRO/83.V2.11.0+build.a546b91;7C2F80E0D605",
        "gigaset",
        "N870 IP PRO",
        "83.V2.11.0+build.a546b91",
        "7c2f80e0d605",
        "device-config",
    ),
    (
        "/0c383e557eb1.cfg",
        "Fanvil X5U-V2 2.12.16.17 0c383e557eb1",
        "fanvil",
        "X5U",
        "2.12.16.17",
        "0c383e557eb1",
        "device-config",
    ),
]


@pytest.mark.parametrize(
    ("path", "agent", "vendor", "model", "version", "mac", "file"), REAL_REQUESTS
)
def test_real_requests(
    profiles: ProfileSet,
    path: str,
    agent: str,
    vendor: str,
    model: str,
    version: str,
    mac: str | None,
    file: str,
) -> None:
    result = detect(profiles, path, agent)
    assert isinstance(result, Detection), result
    assert (result.vendor, result.model, result.firmware_version, result.mac) == (
        vendor,
        model,
        version,
        mac,
    )
    assert result.file is not None
    assert result.file.name == file
    assert result.evidence[0].source is EvidenceSource.USER_AGENT
    assert result.evidence[-1].rule == file


def test_validated_and_unvalidated_models(profiles: ProfileSet) -> None:
    validated = detect(profiles, "/x", "Yealink SIP-T46U 108.86.0.90")
    assert isinstance(validated, Detection)
    assert validated.model_spec is not None
    legacy = detect(profiles, "/x", "Yealink SIP-T38G  38.70.0.125")
    assert isinstance(legacy, Detection)
    assert (legacy.model, legacy.model_spec, legacy.file) == ("T38G", None, None)


def test_unknown_mac_free_user_agents_keep_serials_out(profiles: ProfileSet) -> None:
    serial_only = detect(profiles, "/spa525.cfg", "Cisco/SPA525G-7.4.7 (CBT141900G7)")
    linksys = detect(profiles, "/x", "Linksys/SPA-942-6.1.5(a) (88019FA42805)")
    assert isinstance(serial_only, Detection) and isinstance(linksys, Detection)
    assert serial_only.mac is None and linksys.mac is None  # a lone bracket is the serial
    assert (linksys.model, linksys.firmware_version) == ("SPA-942", "6.1.5(a)")


def test_grandstream_hardware_revision(profiles: ProfileSet) -> None:
    result = detect(
        profiles, "/cfg.xml", "Grandstream Model HW HT801 V1.1A SW 1.0.17.5 DevId c074ad273a10"
    )
    assert isinstance(result, Detection)
    assert (result.hardware, result.model, result.file and result.file.name) == (
        "V1.1A",
        "HT801",
        "common-config",
    )


def test_poly_updater_version_is_not_the_firmware(profiles: ProfileSet) -> None:
    agent = "FileTransport PolycomSoundStationIP-SSIP_6000-UA/5.0.3.1667 Type/Updater"
    result = detect(profiles, "/0004F2ABCDEF.cfg", agent)
    assert isinstance(result, Detection)
    assert (result.firmware_version, result.updater_version) == (None, "5.0.3.1667")
    assert result.evidence[0].rule == "updater"
    assert result.mac == "0004f2abcdef"  # Poly may ask in either case


def test_poly_master_is_not_a_mac_file(profiles: ProfileSet) -> None:
    result = detect(profiles, "/000000000000.cfg", None)
    assert isinstance(result, Detection)
    assert (result.vendor, result.mac, result.file and result.file.name) == ("poly", None, "master")


@pytest.mark.parametrize(
    ("path", "agent"),
    [
        ("/001565f429a4.cfg", "Yealink SIP-T46U 108.86.0.90 24:9a:d8:88:d0:f4"),
        ("/snomD785-000413922D25.htm", SNOM_UA),
        ("/cfgc074ad273a11.xml", "Grandstream Model HW HT801 V1.1A SW 1.0.17.5 DevId c074ad273a10"),
        ("/0002fdff2104.xml", "Cisco/SPA508G-7.4.4 (0002FDFF2103)(CBT141400UK)"),
        ("/7c2f80e0d606.xml", "Gigaset N870 IP PRO/83.V2.11.0+build.a546b91;7C2F80E0D605"),
        ("/0c383e557eb2.cfg", "Fanvil X5U-V2 2.12.16.17 0c383e557eb1"),
    ],
)
def test_path_and_user_agent_macs_must_agree(profiles: ProfileSet, path: str, agent: str) -> None:
    result = detect(profiles, path, agent)
    assert isinstance(result, Rejection)
    assert result.reason is RejectReason.MAC_MISMATCH
    assert {item.source for item in result.evidence} == {
        EvidenceSource.USER_AGENT,
        EvidenceSource.PATH,
    }


def test_one_detector_judges_each_request_of_a_user_agent_by_its_own_path(
    profiles: ProfileSet,
) -> None:
    """A phone's User-Agent is matched once per Detector and reused: the paths of its
    later requests are still checked against it, and what it captured cannot be changed
    by one request for the next."""
    detector = Detector(profiles)
    agent = "Yealink SIP-T46U 108.86.0.90 24:9a:d8:88:d0:f4"
    first = detector.detect("/249ad888d0f4.boot", agent)
    assert isinstance(first, Detection)
    assert (first.mac, first.file and first.file.name) == ("249ad888d0f4", "device-boot")
    other = detector.detect("/001565f429a4.cfg", agent)
    assert isinstance(other, Rejection)
    assert other.reason is RejectReason.MAC_MISMATCH
    again = detector.detect("/249ad888d0f4.cfg", agent)
    assert isinstance(again, Detection)
    assert (again.mac, again.file and again.file.name) == ("249ad888d0f4", "device-config")
    captured = again.evidence[0].captured
    with pytest.raises(TypeError):
        captured["mac"] = "001565f429a4"  # type: ignore[index]


def test_another_models_file_is_rejected(profiles: ProfileSet) -> None:
    result = detect(profiles, "/snomD345.htm", SNOM_UA)
    assert isinstance(result, Rejection)
    assert result.reason is RejectReason.MODEL_MISMATCH
    yealink = detect(profiles, "/y000000000066.cfg", "Yealink SIP-T46U 108.86.0.90")
    assert isinstance(yealink, Rejection)
    assert yealink.reason is RejectReason.MODEL_MISMATCH


def test_path_alone_can_identify_vendor_and_model(profiles: ProfileSet) -> None:
    result = detect(profiles, "/snomD785-000413922D24.htm", None)
    assert isinstance(result, Detection)
    assert (result.vendor, result.model, result.mac, result.firmware_version) == (
        "snom",
        "D785",
        "000413922d24",
        None,
    )
    assert [item.source for item in result.evidence] == [EvidenceSource.PATH]


def test_a_path_several_vendors_use_is_ambiguous_without_user_agent(profiles: ProfileSet) -> None:
    result = detect(profiles, "/0c383e557eb1.cfg", "")
    assert isinstance(result, Rejection)
    assert result.reason is RejectReason.AMBIGUOUS
    assert "fanvil" in result.detail and "yealink" in result.detail


def test_mac_case_is_part_of_the_file_name(profiles: ProfileSet) -> None:
    """Snom asks in upper case; a lower-case Snom MAC file is not a Snom file."""
    result = detect(profiles, "/snomD785-000413922d24.htm", SNOM_UA)
    assert isinstance(result, Detection)
    assert result.file is None


def test_a_file_name_with_a_newline_after_it_is_not_the_file(profiles: ProfileSet) -> None:
    # /prov/249ad888d0f4.cfg%0A: a regex's "$" also matches before a final newline.
    agent = "Yealink SIP-T46U 108.86.0.90 249ad888d0f4"
    assert isinstance(detect(profiles, "/prov/249ad888d0f4.cfg", agent), Detection)
    result = detect(profiles, "/prov/249ad888d0f4.cfg\n", agent)
    assert isinstance(result, Rejection) or result.file is None


@pytest.mark.parametrize(
    ("path", "agent", "version"),
    [
        # b"\xff" in the header, as aiohttp hands it over: kept as an escape
        ("/spa122.cfg", "Cisco/SPA122-1.3.5\udcff (000E08AABBCC)(CBT1)", "1.3.5\\xff"),
        # the columns hold 64 characters; PostgreSQL refuses more
        (
            "/cfg000b82aabbcc.xml",
            "Grandstream Model HW HT812 SW 1." + "2." * 60 + "3 DevId 000b82aabbcc",
            "1." + "2." * 31,
        ),
    ],
)
def test_what_the_user_agent_carries_is_storable(
    profiles: ProfileSet, path: str, agent: str, version: str
) -> None:
    result = detect(profiles, path, agent)
    assert isinstance(result, Detection), result
    assert result.firmware_version == version


def test_unrecognised(profiles: ProfileSet) -> None:
    result = detect(profiles, "/index.html", "curl/8.5.0")
    assert isinstance(result, Rejection)
    assert result.reason is RejectReason.UNRECOGNISED


def test_hostile_input_is_bounded(profiles: ProfileSet) -> None:
    detector = Detector(profiles)
    huge = "Yealink SIP-T46U " + "1." * 50_000 + "1"
    for path, agent in (
        ("/y000000000000.boot", huge),
        ("/" + "a" * 100_000, "Yealink SIP-T46U 1.2"),
    ):
        result = detector.detect(path, agent)
        assert isinstance(result, Rejection)
        assert result.reason is RejectReason.UNRECOGNISED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24:9a:d8:88:d0:f4", "249ad888d0f4"),
        ("24-9A-D8-88-D0-F4", "249ad888d0f4"),
        ("249A.D888.D0F4", "249ad888d0f4"),
        ("000000000000", None),
        ("ffffffffffff", None),
        ("249ad888d0f", None),
        ("249ad888d0fg", None),
    ],
)
def test_normalise_mac(text: str, expected: str | None) -> None:
    assert normalise_mac(text) == expected


@given(st.binary(min_size=6, max_size=6))
def test_every_mac_spelling_normalises_alike(raw: bytes) -> None:
    plain = raw.hex()
    spellings = [
        plain.upper(),
        ":".join(plain[i : i + 2] for i in range(0, 12, 2)),
        "-".join(plain[i : i + 2] for i in range(0, 12, 2)).upper(),
    ]
    expected = None if plain in ("000000000000", "ffffffffffff") else plain
    assert {normalise_mac(spelling) for spelling in spellings} == {expected}
