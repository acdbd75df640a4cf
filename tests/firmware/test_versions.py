"""Version comparison across the spellings devices and manifests use."""

import pytest

from dls.firmware.versions import same_version, version_key


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("108.86.0.90", "108.86.0.90"),
        ("V3 R5.16.0", "3.5.16.0"),  # Unify software-version vs file-sw-version
        ("V3 R5.21.0", "3.5.21.0000"),  # the catalog pads the last group
        ("v3r5.16.0", "3.5.16.0"),
        ("V3 R5.16.0 SIP 200306", "3.5.16.0"),
        ("83.V2.65.0", "83.v2.65.0"),
        ("  10.1.33.33 ", "10.1.33.33"),
    ],
)
def test_same_firmware(first: str, second: str) -> None:
    assert same_version(first, second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("108.86.0.90", "108.86.0.91"),
        ("3.5.16.0", "3.5.16"),
        ("V3 R5.16.0", "3.5.17.0"),
        ("83.V2.65.0", "83.V2.62.1"),
    ],
)
def test_different_firmware(first: str, second: str) -> None:
    assert not same_version(first, second)


def test_unknown_is_never_the_same() -> None:
    assert not same_version(None, "1.0")
    assert not same_version("1.0", None)


def test_keys_fit_the_column() -> None:
    assert len(version_key("x" * 200)) == 64


def test_a_report_of_any_length_compares_without_raising() -> None:
    # int() refuses numbers past 4,300 digits; a phone's report can be any length.
    huge = "1." + "9" * 5000
    assert len(version_key(huge)) <= 64
    assert not same_version(huge, "1.9")
