"""Keep secrets out of every output: URLs lose credentials and secret-looking query values."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["redact_url", "secret_name", "SECRET_HEADERS", "SECRET_WORDS"]

# The one list of what is secret. Header values under these names never reach an output:
SECRET_HEADERS = frozenset({"authorization", "cookie", "x-csrf-token", "proxy-authorization", "x-api-key"})
# A name (URL query parameter, configuration key) holding one of these words holds a secret:
SECRET_WORDS = (
    "token",
    "secret",
    "password",
    "auth",
    "bearer",
    "cookie",
    "csrf",
    "webhook",
    "key",
    "sig",
)
# ...and in a URL query, a session id is a credential too (in a configuration, "session" names counts
# and timeouts: sessions, session_timeout, session_create)
_URL_WORDS = (*SECRET_WORDS, "session")


def secret_name(name: str, in_url: bool = False) -> bool:
    """Whether a value under ``name`` is a secret: a URL query parameter (``in_url``) or a configuration
    key. The *names* of secret sources (``bearer_env``, ``bearer_file``, ``webhook_env``) are not."""
    k = name.lower()
    if not in_url and k.endswith(("_env", "_file")):
        return False
    return any(w in k for w in (_URL_WORDS if in_url else SECRET_WORDS))


def redact_url(url: str) -> str:
    """``https://u:p@h/x?token=abc&q=1`` -> ``https://h/x?token=REDACTED&q=1``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    netloc = parts.netloc.rpartition("@")[2]  # host and port as written (even a bad or zero port), no credentials
    query = urlencode(
        [
            (k, "REDACTED" if secret_name(k, in_url=True) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
