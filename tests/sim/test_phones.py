"""The simulated phones: User-Agents the server recognises, and each vendor's boot sequence.

Sequences run against a small aiohttp app that serves the files the real renderers
produce for one device, so these tests need no database and no TLS.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from dls.provisioning.files.detect import Detection, Detector
from dls.provisioning.files.digest import DigestVerifier, parse_authorization
from dls.provisioning.files.profiles import VendorProfile, load_profiles
from dls.provisioning.files.render import RenderRequest, render
from dls.provisioning.files.vocabulary import FileRole, FileScope
from dls.sim.phones import (
    AgentTemplate,
    Connection,
    Exchange,
    SimulatedPhone,
    SimulationError,
    UserAgents,
    load_user_agents,
)
from tests.provisioning.files.support import HOSTILE_NAME, HOSTILE_PASSWORD, hostile_settings

MAC = "001565f429a4"
PASSWORD = "digest-password-0123"
PROFILES = load_profiles()
ServerFactory = Callable[..., Awaitable[TestServer]]


def all_models() -> list[tuple[str, str]]:
    return [(profile.vendor, model.name) for profile in PROFILES for model in profile.models]


# --- User-Agents -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "agent", [a for a in load_user_agents() if a.example], ids=lambda a: f"{a.vendor}-{a.name}"
)
def test_templates_reproduce_the_reference_examples(agent: AgentTemplate) -> None:
    example = agent.example
    assert example is not None
    rendered = load_user_agents().render(
        agent.vendor, example.model, example.version, example.mac or MAC, agent.name
    )
    assert rendered == example.user_agent


@pytest.mark.parametrize(("vendor", "model"), all_models())
def test_every_model_is_detected_as_itself(vendor: str, model: str) -> None:
    profile = PROFILES[vendor]
    phone = SimulatedPhone(profile, model, MAC, "2.1.0.7", base_url="https://dls.test/prov/")
    assert any(p.pattern.search(phone.user_agent) for p in profile.user_agents)
    for name, file in phone.files.items():
        detection = Detector(PROFILES).detect(name, phone.user_agent)
        assert isinstance(detection, Detection), (name, detection)
        assert (detection.vendor, detection.file) == (vendor, file)
        assert detection.model == phone.model.name
        assert detection.model_spec == phone.model
        assert detection.firmware_version == "2.1.0.7"
        if file.scope is FileScope.DEVICE:
            assert detection.mac == MAC


def test_a_user_agent_names_the_mac_where_the_vendor_sends_one() -> None:
    detector = Detector(PROFILES)
    for vendor, model in all_models():
        phone = SimulatedPhone(PROFILES[vendor], model, MAC, "1.0", base_url="http://x/")
        # The model's common file carries no MAC: what detection finds came from the UA.
        detection = detector.detect("nothing-here", phone.user_agent)
        assert isinstance(detection, Detection)
        assert detection.mac == (None if vendor == "poly" else MAC), vendor


def test_the_poly_updater_reports_no_application_version() -> None:
    phone = SimulatedPhone(
        PROFILES["poly"], "SSIP6000", MAC, "5.0.3.1667", base_url="http://x/", agent="updater"
    )
    assert phone.user_agent.endswith("Type/Updater")
    detection = Detector(PROFILES).detect(f"{MAC}.cfg", phone.user_agent)
    assert isinstance(detection, Detection)
    assert (detection.firmware_version, detection.updater_version) == (None, "5.0.3.1667")


def test_an_unknown_template_field_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agents.toml"
    path.write_text('[[agents]]\nvendor = "yealink"\ntemplate = "Yealink {serial}"\n')
    with pytest.raises(SimulationError, match="serial"):
        load_user_agents.__wrapped__(path)


def test_a_device_the_profile_does_not_know_is_refused() -> None:
    with pytest.raises(SimulationError, match="no model"):
        SimulatedPhone(PROFILES["yealink"], "T99X", MAC, "1", base_url="http://x/")
    with pytest.raises(SimulationError, match="MAC"):
        SimulatedPhone(PROFILES["yealink"], "T46U", "000000000000", "1", base_url="http://x/")
    with pytest.raises(SimulationError, match="User-Agent"):
        UserAgents(agents=()).render("yealink", "T46U", "1", MAC)


# --- Boot sequences against a file server ------------------------------------------------


@dataclass
class FileServer:
    """Serves one device's rendered files under /prov/; Digest where ``protected``."""

    files: dict[str, bytes] = field(default_factory=dict)
    protected: set[str] = field(default_factory=set)
    password: str = PASSWORD
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    verifier: DigestVerifier = field(default_factory=lambda: DigestVerifier(b"k" * 32))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.requests.append(
            (name, request.headers["User-Agent"], request.headers.get("Authorization"))
        )
        if name in self.protected:
            header = request.headers.get("Authorization")
            credentials = parse_authorization(header) if header else None
            if credentials is None:
                response = web.Response(status=401)
                for challenge in self.verifier.challenges():
                    response.headers.add("WWW-Authenticate", challenge)
                return response
            if not self.verifier.verify(credentials, request.method, MAC, self.password):
                return web.Response(status=404)
        if request.method == "PUT":
            self.files[name] = await request.read()
            return web.Response(status=204)
        body = self.files.get(name)
        if body is None:
            return web.Response(status=404)
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, headers={"ETag": etag})


async def serve(aiohttp_server: ServerFactory, files: FileServer) -> str:
    app = web.Application()
    app.router.add_route("*", "/prov/{name:.+}", files.handle)
    server = await aiohttp_server(app)
    return str(server.make_url("/prov/"))


def rendered(profile: VendorProfile, model: str, base_url: str, **settings: object) -> FileServer:
    """Every file the server would render for the device at ``MAC``."""
    spec = profile.model(model)
    assert spec is not None
    files = FileServer()
    for file in profile.files:
        name = profile.file_name(file, spec, MAC)
        if name is None or file.role in (FileRole.UNSERVED, FileRole.UPLOAD):
            continue
        files.files[name] = render(
            RenderRequest(
                profile,
                spec,
                file,
                hostile_settings(**settings),
                mac=MAC,
                base_url=base_url,
            )
        )
        if file.scope is FileScope.DEVICE:
            files.protected.add(name)
    return files


async def phone_and_files(
    aiohttp_server: ServerFactory, vendor: str, model: str, **options: Any
) -> tuple[SimulatedPhone, FileServer]:
    files = FileServer()
    base_url = await serve(aiohttp_server, files)
    device = rendered(PROFILES[vendor], model, base_url)
    files.files.update(device.files)
    files.protected.update(device.protected)
    options.setdefault("digest_password", PASSWORD)
    phone = SimulatedPhone(PROFILES[vendor], model, MAC, "1.0.0.1", base_url=base_url, **options)
    return phone, files


MAC_UPPER = MAC.upper()
# The requests of a first boot of a registered device, 401 challenges left out.
SEQUENCES = {
    ("yealink", "T46U"): [f"{MAC}.boot", "y000000000108.cfg", f"{MAC}.cfg"],
    ("poly", "VVX400"): [
        f"{MAC}.cfg",
        f"{MAC}-dls.cfg",
        f"{MAC}-license.cfg",
        f"{MAC}-directory.xml",
        "000000000000-directory.xml",
    ],
    ("snom", "D785"): ["snomD785.htm", f"snomD785-{MAC_UPPER}.htm", "snomD785-firmware.xml"],
    ("grandstream", "GXP2135"): [
        f"cfg{MAC}",
        f"cfg{MAC}.bin",
        f"cfg{MAC}.xml",
        "cfggxp2135.xml",
        "cfg.xml",
    ],
    ("grandstream", "HT802"): [
        f"cfg{MAC}",
        f"cfg{MAC}.bin",
        f"cfg{MAC}.xml",
        "cfght802.xml",
        "cfg.xml",
    ],
    ("cisco", "SPA122"): ["spa122.cfg", f"{MAC}.xml"],
    ("gigaset", "N870 IP PRO"): [f"{MAC}.xml"],
    ("fanvil", "X5U"): [f"{MAC}.cfg"],
}
UNSERVED = {f"{MAC}-license.cfg", f"{MAC}-directory.xml", "000000000000-directory.xml"}
UNSERVED |= {f"cfg{MAC}", f"cfg{MAC}.bin"}


def test_every_vendor_has_a_sequence() -> None:
    assert {vendor for vendor, _ in SEQUENCES} == {profile.vendor for profile in PROFILES}


@pytest.mark.parametrize(("vendor", "model"), list(SEQUENCES))
async def test_boot_sequence_per_vendor(
    aiohttp_server: ServerFactory, vendor: str, model: str
) -> None:
    phone, files = await phone_and_files(aiohttp_server, vendor, model)
    async with phone:
        settings = await phone.provision()
    expected = SEQUENCES[vendor, model]
    assert [e for e in phone.log if e.status != 401] == [
        Exchange(name, 404 if name in UNSERVED else 200) for name in expected
    ]
    # The first device file is challenged once; later ones authenticate preemptively.
    assert [e.status for e in phone.log].count(401) == 1
    assert {ua for _, ua, _ in files.requests} == {phone.user_agent}
    assert phone.problems == []
    # The hostile line came through in the vendor's keys.
    assert HOSTILE_NAME in settings.values()
    assert HOSTILE_PASSWORD in settings.values()


async def test_a_second_boot_sends_if_none_match_and_gets_304(
    aiohttp_server: ServerFactory,
) -> None:
    phone, files = await phone_and_files(aiohttp_server, "yealink", "T46U")
    async with phone:
        first = await phone.provision()
        phone.log.clear()
        second = await phone.provision()
        assert phone.log == [
            Exchange(f"{MAC}.boot", 304),
            Exchange("y000000000108.cfg", 304),
            Exchange(f"{MAC}.cfg", 304),
        ]
        assert second == first  # cached copies count as answers
        # The admin changes a setting: only the device file changes.
        changed = rendered(PROFILES["yealink"], "T46U", phone.base_url, language="fr")
        files.files.update(changed.files)
        phone.log.clear()
        third = await phone.provision()
    assert phone.log == [
        Exchange(f"{MAC}.boot", 304),
        Exchange("y000000000108.cfg", 200),
        Exchange(f"{MAC}.cfg", 200),
    ]
    assert (first["lang.gui"], third["lang.gui"]) == ("German", "French")


async def test_without_the_device_files_yealink_and_poly_fall_back_to_common_boot_files(
    aiohttp_server: ServerFactory,
) -> None:
    for vendor, model, expected in (
        ("yealink", "T46U", [(f"{MAC}.boot", 401), ("y000000000000.boot", 200)]),
        ("poly", "VVX400", [(f"{MAC}.cfg", 401), ("000000000000.cfg", 200)]),
    ):
        phone, _ = await phone_and_files(aiohttp_server, vendor, model, digest_password=None)
        async with phone:
            settings = await phone.provision()
        assert phone.log[:2] == expected
        assert HOSTILE_PASSWORD not in settings.values()
        if vendor == "yealink":  # the common boot file names the model file only
            assert phone.log[2:] == [("y000000000108.cfg", 200)]
        else:  # the master names [PHONE_MAC_ADDRESS]-dls.cfg: the phone's own, refused
            assert phone.log[2] == (f"{MAC}-dls.cfg", 401)


async def test_a_wrong_password_gets_nothing_secret(aiohttp_server: ServerFactory) -> None:
    phone, _ = await phone_and_files(
        aiohttp_server, "gigaset", "N870 IP PRO", digest_password="wrong-password-000"
    )
    async with phone:
        settings = await phone.provision()
    assert phone.log == [(f"{MAC}.xml", 401), (f"{MAC}.xml", 404)]
    assert settings == {}
    assert phone.answered == []


@pytest.mark.parametrize(
    ("connection", "opened"), [(Connection.PER_FETCH, 6), (Connection.KEEP_ALIVE, 1)]
)
async def test_a_new_connection_per_request_or_keep_alive(
    aiohttp_server: ServerFactory, connection: Connection, opened: int
) -> None:
    phone, _ = await phone_and_files(
        aiohttp_server, "grandstream", "GXP2135", connection=connection
    )
    async with phone:
        await phone.provision()
    assert len(phone.log) == 6  # five files, one of them challenged first
    assert phone.connections_opened == opened


async def test_a_file_for_another_mac_or_malformed_is_refused(
    aiohttp_server: ServerFactory,
) -> None:
    phone, files = await phone_and_files(aiohttp_server, "grandstream", "HT802")
    files.files[f"cfg{MAC}.xml"] = files.files[f"cfg{MAC}.xml"].replace(
        MAC.encode(), b"c074ad112233"
    )
    files.files["cfg.xml"] = b"<gs_provision><config>"
    async with phone:
        settings = await phone.provision()
    assert [problem.split(":")[0] for problem in phone.problems] == [f"cfg{MAC}.xml", "cfg.xml"]
    assert phone.answered == ["cfght802.xml"]
    assert HOSTILE_PASSWORD not in settings.values()


async def test_cisco_follows_profile_rule_b_with_its_variables(
    aiohttp_server: ServerFactory,
) -> None:
    phone, files = await phone_and_files(aiohttp_server, "cisco", "SPA122")
    common = files.files["spa122.cfg"].decode()
    assert f"{phone.base_url}$MA.xml" in common
    files.files["spa122.cfg"] = common.replace(
        f"{phone.base_url}$MA.xml", f'[--key "k"] {phone.base_url}extra-$MAU-$PSN.xml'
    ).encode()
    files.files[f"extra-{MAC_UPPER}-122.xml"] = b"<flat-profile><Extra>1</Extra></flat-profile>"
    async with phone:
        settings = await phone.provision()
    assert [e.file for e in phone.log if e.status != 401] == [
        "spa122.cfg",
        f"extra-{MAC_UPPER}-122.xml",
        f"{MAC}.xml",
    ]
    assert settings["Extra"] == "1"


async def test_poly_uploads_its_logs(aiohttp_server: ServerFactory) -> None:
    phone, files = await phone_and_files(aiohttp_server, "poly", "VVX400")
    files.protected.add(f"{MAC}-app.log")
    async with phone:
        assert await phone.upload(f"{MAC}-app.log", b"boot ok\n") == 204
    assert phone.log == [(f"{MAC}-app.log", 401), (f"{MAC}-app.log", 204)]
    assert files.files[f"{MAC}-app.log"] == b"boot ok\n"


async def test_device_files_override_common_ones(aiohttp_server: ServerFactory) -> None:
    phone, files = await phone_and_files(aiohttp_server, "grandstream", "GXP2135")
    p30 = '<gs_provision version="1"><config version="1"><P30>{}</P30></config></gs_provision>'
    files.files[f"cfg{MAC}.xml"] = p30.format("device").encode()
    files.files["cfg.xml"] = p30.format("common").encode()  # fetched after the device file
    async with phone:
        settings = await phone.provision()
    assert settings["P30"] == "device"
