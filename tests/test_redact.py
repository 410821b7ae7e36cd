"""The one list of secrets (sseprobe/_redact.py) serves URLs, headers and configurations alike."""

from __future__ import annotations

from sseprobe._redact import redact_url, secret_name
from sseprobe.report.html import scrub


def test_one_list_for_urls_and_configurations() -> None:
    url = "https://u:p@h/x?token=a&api_key=b&sig=c&session=d&webhook=e&q=1"
    assert redact_url(url) == (
        "https://h/x?token=REDACTED&api_key=REDACTED&sig=REDACTED&session=REDACTED&webhook=REDACTED&q=1"
    )
    config = {"webhook_url": "https://hooks/x", "bearer_env": "TOKEN", "api_key": "k", "sessions": 100}
    assert scrub(config) == {"webhook_url": "REDACTED", "bearer_env": "TOKEN", "api_key": "REDACTED", "sessions": 100}
    # in a configuration, "session" names counts and timeouts; in a URL query it is a credential
    assert not secret_name("session_timeout") and secret_name("session", in_url=True)
