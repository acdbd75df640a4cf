"""The mapping engine: which keys a file gets, raw keys, line capacity and omissions."""

from __future__ import annotations

from dls.devices.settings import DeviceSettings
from dls.provisioning.files.profiles import ProfileSet
from dls.provisioning.files.render import RenderRequest, vendor_values
from dls.provisioning.files.vocabulary import FileRole, FileScope

from .support import MAC, hostile_settings


def test_device_file_gets_globals_lines_then_raw_keys(profiles: ProfileSet) -> None:
    yealink = profiles["yealink"]
    t46u = yealink.model("T46U")
    assert t46u is not None
    settings = hostile_settings(
        raw={
            "yealink": {"account.1.label": "raw wins", "features.dnd.enable": "1"},
            "snom": {"x": "y"},
        }
    )
    result = vendor_values(
        RenderRequest(yealink, t46u, yealink.file("device-config"), settings, mac=MAC)
    )
    keys = list(result.values)
    assert keys.index("local_time.ntp_server1") < keys.index("account.1.user_name")
    assert keys[-1] == "features.dnd.enable"
    assert result.values["account.1.label"] == "raw wins"
    assert "x" not in result.values  # another vendor's raw keys
    assert result.values["static.security.user_password"] == "admin:admin-<secret>-&"
    assert result.secret_keys == {
        "static.security.user_password",
        "account.1.password",
        "account.2.password",
    }
    assert result.lines == (1, 2)


def test_common_scope_has_no_secret_line_or_raw_key(profiles: ProfileSet) -> None:
    for profile in profiles:
        for spec in profile.files:
            if spec.scope is not FileScope.COMMON or spec.role is not FileRole.CONFIG:
                continue
            model = next(m for m in profile.models if profile.file_name(spec, m, None))
            settings = hostile_settings(
                raw={profile.vendor: {"P1" if profile.vendor == "grandstream" else "r": "raw"}}
            )
            result = vendor_values(RenderRequest(profile, model, spec, settings))
            assert result.values, (profile.vendor, spec.name)
            assert not result.secret_keys
            assert result.lines == ()
            assert "raw" not in result.values.values()


def test_lines_beyond_the_model_are_left_out_and_reported(profiles: ProfileSet) -> None:
    grandstream = profiles["grandstream"]
    ht801 = grandstream.model("HT801")
    assert ht801 is not None
    result = vendor_values(
        RenderRequest(
            grandstream, ht801, grandstream.file("device-config"), hostile_settings(), mac=MAC
        )
    )
    assert result.lines == (1,)
    assert "P401" not in result.values and "P735" not in result.values
    assert [(o.canonical, o.reason) for o in result.omitted] == [("lines.2", "HT801 has 1 line(s)")]


def test_unmapped_language_is_reported_not_guessed(profiles: ProfileSet) -> None:
    snom = profiles["snom"]
    d785 = snom.model("D785")
    assert d785 is not None
    result = vendor_values(
        RenderRequest(
            snom, d785, snom.file("device-config"), hostile_settings(language="ja"), mac=MAC
        )
    )
    assert "language" not in result.values
    assert {o.key for o in result.omitted} == {"language", "web_language"}


def test_regional_language_falls_back_to_the_language(profiles: ProfileSet) -> None:
    poly = profiles["poly"]
    vvx = poly.model("VVX400")
    assert vvx is not None
    result = vendor_values(
        RenderRequest(
            poly, vvx, poly.file("device-config"), hostile_settings(language="de-AT"), mac=MAC
        )
    )
    assert result.values["lcl.ml.lang"] == "German_Germany"


def test_zone_a_vendor_cannot_express_is_reported(profiles: ProfileSet) -> None:
    snom = profiles["snom"]
    d785 = snom.model("D785")
    assert d785 is not None
    settings = hostile_settings(time={"time_zone": "Asia/Kolkata"})
    result = vendor_values(RenderRequest(snom, d785, snom.file("device-config"), settings, mac=MAC))
    assert "timezone" not in result.values
    assert [o.key for o in result.omitted] == ["timezone"]


def test_unset_settings_leave_the_device_alone(profiles: ProfileSet) -> None:
    fanvil = profiles["fanvil"]
    x5u = fanvil.model("X5U")
    assert x5u is not None
    result = vendor_values(
        RenderRequest(fanvil, x5u, fanvil.file("device-config"), DeviceSettings(), mac=MAC)
    )
    assert result.values == {}
    assert result.omitted == ()


def test_gigaset_groups_lines_by_server_set(profiles: ProfileSet) -> None:
    gigaset = profiles["gigaset"]
    line = {"registrar": "sip.example.net"}
    settings = hostile_settings(lines={i: {**line, "sip_user": str(200 + i)} for i in (1, 2, 3)})
    result = vendor_values(
        RenderRequest(gigaset, gigaset.models[0], gigaset.file("device-config"), settings, mac=MAC)
    )
    assert {result.values[f"SipAccount.0000{i}.ProviderId"] for i in (1, 2, 3)} == {"1"}
    assert not any(key.startswith("SipProvider.2.") for key in result.values)
