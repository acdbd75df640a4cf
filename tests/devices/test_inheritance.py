"""Resolution of effective settings across system, tenant, group, user and device."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dls.devices.inheritance import (
    MASK,
    Level,
    ResolutionError,
    SettingsLayer,
    effective_view,
    resolve,
)
from dls.devices.settings import Transport


def layer(**document: Any) -> SettingsLayer:
    return SettingsLayer.model_validate(document)


def rows(resolution: Any) -> dict[str, Any]:
    return {row.path: row for row in effective_view(resolution)}


def test_more_specific_level_wins_per_value() -> None:
    resolution = resolve(
        [
            (Level.SYSTEM, layer(language="en", time={"ntp_servers": ["ntp.example.net"]})),
            (Level.TENANT, layer(language="de", vlan={"id": 100, "priority": 3})),
            (Level.DEVICE, layer(vlan={"priority": 5})),
        ]
    )
    settings = resolution.settings
    assert settings.language == "de"
    assert settings.time.ntp_servers == ("ntp.example.net",)
    assert settings.vlan is not None
    assert (settings.vlan.id, settings.vlan.priority) == (100, 5)
    assert resolution.provenance[("vlan", "id")].level is Level.TENANT
    assert resolution.provenance[("vlan", "priority")].level is Level.DEVICE
    assert resolution.provenance[("language",)].level is Level.TENANT


def test_lines_merge_per_index_and_line_defaults_fill_them() -> None:
    resolution = resolve(
        [
            (
                Level.TENANT,
                layer(line_defaults={"registrar": "sip.example.net", "transport": "tls"}),
            ),
            (Level.GROUP, layer(lines={2: {"sip_user": "202", "port": 5070}})),
            (Level.USER, layer(lines={1: {"sip_user": "201", "display_name": "Front Desk"}})),
            (Level.DEVICE, layer(lines={1: {"display_name": "Lobby"}})),
        ]
    )
    lines = resolution.settings.lines
    assert sorted(lines) == [1, 2]
    assert (lines[1].sip_user, lines[1].display_name) == ("201", "Lobby")
    assert lines[1].registrar == lines[2].registrar == "sip.example.net"
    assert lines[2].transport is Transport.TLS
    assert lines[2].port == 5070
    registrar = resolution.provenance[("lines", 1, "registrar")]
    assert registrar.level is Level.TENANT
    assert registrar.source == ("line_defaults", "registrar")
    assert resolution.provenance[("lines", 1, "display_name")].level is Level.DEVICE


def test_line_defaults_of_a_more_specific_level_beat_a_line_value() -> None:
    resolution = resolve(
        [
            (Level.TENANT, layer(lines={1: {"sip_user": "201", "registrar": "old.example.net"}})),
            (Level.DEVICE, layer(line_defaults={"registrar": "new.example.net"})),
        ]
    )
    assert resolution.settings.lines[1].registrar == "new.example.net"
    assert resolution.provenance[("lines", 1, "registrar")].level is Level.DEVICE


def test_own_value_beats_line_defaults_of_the_same_level() -> None:
    resolution = resolve(
        [
            (
                Level.TENANT,
                layer(
                    line_defaults={"registrar": "default.example.net"},
                    lines={1: {"sip_user": "201", "registrar": "own.example.net"}},
                ),
            )
        ]
    )
    assert resolution.settings.lines[1].registrar == "own.example.net"


def test_null_clears_what_levels_above_said() -> None:
    resolution = resolve(
        [
            (
                Level.TENANT,
                layer(
                    vlan={"id": 100},
                    language="de",
                    lines={
                        1: {"sip_user": "201", "registrar": "sip.example.net"},
                        2: {"sip_user": "202", "registrar": "sip.example.net"},
                    },
                    raw={"yealink": {"a.b": "1", "c.d": "2"}, "snom": {"x": "y"}},
                ),
            ),
            (
                Level.DEVICE,
                layer(
                    vlan=None,
                    language=None,
                    lines={2: None},
                    raw={"yealink": {"a.b": None}, "snom": None},
                ),
            ),
        ]
    )
    settings = resolution.settings
    assert settings.vlan is None
    assert settings.language is None
    assert sorted(settings.lines) == [1]
    assert settings.raw == {"yealink": {"c.d": "2"}}
    assert resolution.cleared[("vlan",)] is Level.DEVICE
    assert resolution.cleared[("lines", 2)] is Level.DEVICE


def test_absent_fields_inherit_but_explicit_null_does_not() -> None:
    base = (Level.TENANT, layer(language="de"))
    assert resolve([base, (Level.DEVICE, layer())]).settings.language == "de"
    assert resolve([base, (Level.DEVICE, layer(language=None))]).settings.language is None


def test_incomplete_line_names_the_missing_path() -> None:
    with pytest.raises(ResolutionError, match=r"lines\.3\.registrar"):
        resolve([(Level.USER, layer(lines={3: {"sip_user": "203"}}))])


def test_layers_must_come_in_order() -> None:
    with pytest.raises(ValueError, match="out of order"):
        resolve([(Level.DEVICE, layer()), (Level.TENANT, layer())])
    with pytest.raises(ValueError, match="out of order"):
        resolve([(Level.USER, layer()), (Level.USER, layer())])


def test_layers_validate_like_the_model() -> None:
    with pytest.raises(ValueError, match="time zone"):
        layer(time={"time_zone": "Nowhere/Special"})
    with pytest.raises(ValueError, match="Extra inputs"):
        layer(colour="blue")


def test_effective_view_masks_secrets_and_shows_defaults() -> None:
    resolution = resolve(
        [
            (Level.SYSTEM, layer(admin_password="adm1n-secret")),
            (
                Level.USER,
                layer(
                    lines={
                        1: {
                            "sip_user": "201",
                            "registrar": "sip.example.net",
                            "password": "line-secret",
                        }
                    },
                    raw={
                        "yealink": {
                            "static.auto_provision.server.password": "raw-secret",
                            "features.x": "1",
                        }
                    },
                ),
            ),
        ]
    )
    view = rows(resolution)
    assert view["admin_password"].value == MASK
    assert view["admin_password"].level is Level.SYSTEM
    assert view["lines.1.password"].value == MASK
    assert view["raw.yealink[static.auto_provision.server.password]"].value == MASK
    assert view["raw.yealink[features.x]"].value == "1"
    assert view["lines.1.port"].value == 5060
    assert view["lines.1.port"].level is None  # the model's default, nobody set it
    rendered = repr(effective_view(resolution))
    for secret in ("adm1n-secret", "line-secret", "raw-secret"):
        assert secret not in rendered


LANGUAGES = st.sampled_from(["de", "en", "fr", None])


@given(
    st.lists(
        st.tuples(st.sampled_from(list(Level)), st.one_of(st.none(), st.tuples(LANGUAGES))),
        max_size=5,
    )
)
def test_the_last_level_that_spoke_wins(
    statements: list[tuple[Level, tuple[str | None] | None]],
) -> None:
    """Property: for any stack, a value is what the most specific level that set it said."""
    by_level = dict(statements)  # one document per level
    layers = []
    for level in sorted(by_level):
        said = by_level[level]
        layers.append((level, layer() if said is None else layer(language=said[0])))
    expected, expected_level = None, None
    for level, document in layers:
        if "language" in document.model_fields_set:
            expected, expected_level = document.language, level
    resolution = resolve(layers)
    assert resolution.settings.language == expected
    if expected is not None:
        assert resolution.provenance[("language",)].level is expected_level
