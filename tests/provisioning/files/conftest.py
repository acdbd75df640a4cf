"""Fixtures for file provisioning tests."""

from __future__ import annotations

import pytest

from dls.provisioning.files.profiles import ProfileSet, load_profiles


@pytest.fixture(scope="session")
def profiles() -> ProfileSet:
    return load_profiles()
