"""Keep secrets out of every output: URLs lose credentials and secret-looking query values."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["redact_url", "SECRET_HEADERS"]

SECRET_HEADERS = frozenset({"authorization", "cookie", "x-csrf-token", "proxy-authorization", "x-api-key"})
_SECRET_WORDS = ("token", "key", "secret", "password", "auth", "sig", "session")


def redact_url(url: str) -> str:
    """``https://u:p@h/x?token=abc&q=1`` -> ``https://h/x?token=REDACTED&q=1``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    netloc = parts.netloc.rpartition("@")[2]  # host and port as written (even a bad or zero port), no credentials
    query = urlencode(
        [
            (k, "REDACTED" if any(w in k.lower() for w in _SECRET_WORDS) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
