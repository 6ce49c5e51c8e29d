"""Small assertions shared by the server tests."""
import datetime as dt
import re

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


def assert_error(response, status, error=None):
    """A JSON error {"error", "detail"} with this status (and code); never a 500."""
    assert response.status_code != 500, response.text
    assert response.status_code == status, (response.status_code, response.text[:500])
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert isinstance(body["error"], str) and isinstance(body["detail"], str) and body["detail"]
    assert "Traceback" not in response.text
    if error is not None:
        assert body["error"] == error, body
    return body


def parse_time(text):
    assert ISO_Z.fullmatch(text), text
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
