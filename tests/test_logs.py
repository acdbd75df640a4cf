import json
import logging

import pytest

from dls.config import LogFormat
from dls.logs import REQUEST_ID, configure, mask_fields

pytestmark = pytest.mark.usefixtures("restore_root_logger")


def test_secret_looking_fields_are_masked_at_any_depth() -> None:
    masked = mask_fields(
        {
            "sip_password": "hunter2",
            "api_token": "tok",
            "deployment_pin": "123456",
            "Authorization": "Basic eA==",
            "secret_key": "k",
            "mapping": "kept",
            "device": {"digest_password": "x", "mac": "001a2b3c4d5e"},
        }
    )
    assert masked["sip_password"] == masked["api_token"] == masked["deployment_pin"] == "***"
    assert masked["Authorization"] == masked["secret_key"] == "***"
    assert masked["mapping"] == "kept"
    assert masked["device"] == {"digest_password": "***", "mac": "001a2b3c4d5e"}


@pytest.mark.parametrize("log_format", list(LogFormat))
def test_lines_carry_the_request_id_and_no_secret(
    log_format: LogFormat, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(log_format, "INFO")
    token = REQUEST_ID.set("req-42")
    try:
        logging.getLogger("dls.test").info(
            "line set", extra={"fields": {"line": 1, "password": "s3cret&<>"}}
        )
    finally:
        REQUEST_ID.reset(token)
    err = capsys.readouterr().err.strip()
    assert "s3cret" not in err
    if log_format is LogFormat.JSON:
        entry = json.loads(err)
        assert entry["request_id"] == "req-42" and entry["password"] == "***"
    else:
        assert "[req-42]" in err and "password=***" in err
