"""Keep secrets out of every output: URLs lose credentials and secret-looking query values."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["redact_url", "redact_argv", "secret_name", "SECRET_HEADERS", "SECRET_WORDS"]

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


# flags whose value is never shown: any header (names stay, a custom one may carry a key) and a body
_VALUE_FLAGS = {"-H": "header", "--header": "header", "--body": "body"}


def redact_argv(argv: list[str]) -> list[str]:
    """A command line fit to be recorded by others (Ray stores the driver's as its job entrypoint):
    header values and bodies replaced, URLs without credentials or secret query values, any word
    after ``Bearer`` gone. ``-H 'Authorization: Bearer x'`` -> ``-H 'Authorization: REDACTED'``."""
    out: list[str] = []
    expect: str | None = None
    for arg in argv:
        if expect is not None:
            out.append(_redact_value(expect, arg))
            expect = None
        elif arg in _VALUE_FLAGS:
            out.append(arg)
            expect = _VALUE_FLAGS[arg]
        elif arg.startswith("-H") and not arg.startswith("--"):
            out.append("-H" + _redact_value("header", arg[2:]))
        elif arg.startswith("--") and "=" in arg and arg.split("=", 1)[0] in _VALUE_FLAGS:
            flag, value = arg.split("=", 1)
            out.append(f"{flag}={_redact_value(_VALUE_FLAGS[flag], value)}")
        else:
            out.append(_redact_word(arg))
    return out


def _redact_value(kind: str, value: str) -> str:
    if kind == "header":
        name, sep, _ = value.partition(":")
        return f"{name}: REDACTED" if sep else "REDACTED"
    return "REDACTED"


def _redact_word(arg: str) -> str:
    if "bearer " in arg.lower():
        return "REDACTED"
    if "://" not in arg:
        return arg
    head, sep, url = arg.rpartition("=") if arg.startswith("-") else ("", "", arg)
    return head + sep + redact_url(url)
