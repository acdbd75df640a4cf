import base64
import stat
from collections.abc import Callable

import pytest

from dls.config import ConfigError, Settings
from dls.secretbox import KEY_FILE, SecretBox, SecretError, load_secret_box


def test_key_file_is_created_once_with_mode_0600(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    box = load_secret_box(settings)
    path = settings.certs_dir / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret_box(settings).key_id == box.key_id


def test_environment_key_wins(make_settings: Callable[..., Settings]) -> None:
    key = base64.b64encode(b"k" * 32).decode()
    box = load_secret_box(make_settings(secret_key=key))
    assert box.key_id == SecretBox(b"k" * 32).key_id


@pytest.mark.parametrize("content", [b"", b"not base64\n", base64.b64encode(b"k" * 16) + b"\n"])
def test_a_damaged_key_file_is_a_configuration_error(
    make_settings: Callable[..., Settings], content: bytes
) -> None:
    """Not a traceback: the CLI prints the one line and exits 2."""
    settings = make_settings()
    path = settings.certs_dir / KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"^{path}: must be 32 random bytes in base64"):
        load_secret_box(settings)


def test_ciphertexts_are_bound_to_purpose_and_key() -> None:
    box, other = SecretBox(b"a" * 32), SecretBox(b"b" * 32)
    token = box.encrypt("sip-p&ss<>", "device:1:digest")
    assert "sip" not in token and box.owns(token)
    assert box.decrypt(token, "device:1:digest") == "sip-p&ss<>"
    with pytest.raises(SecretError, match="another purpose"):
        box.decrypt(token, "device:2:digest")
    with pytest.raises(SecretError, match="encrypted under key"):
        other.decrypt(token, "device:1:digest")
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(SecretError):
        box.decrypt(tampered, "device:1:digest")
    with pytest.raises(SecretError, match="not a dls ciphertext"):
        box.decrypt("plain text", "device:1:digest")
    assert box.encrypt("x", "p") != box.encrypt("x", "p")  # fresh nonce each time
