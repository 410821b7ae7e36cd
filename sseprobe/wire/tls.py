"""The TLS client context of an https:// cohort, built once per set of options, every file it reads
checked first: a regular file of bounded size (a FIFO would block the start, /dev/zero never end),
and a key that is not encrypted (OpenSSL would prompt for its pass phrase on the terminal)."""

from __future__ import annotations

import os
import ssl
import stat

from .._config import TLSOptions

__all__ = ["tls_context"]


def tls_context(opts: TLSOptions) -> ssl.SSLContext:
    """The client context for ``opts``: system CAs (or ``ca_file``), host names checked, ALPN
    http/1.1, the client certificate loaded. ``insecure`` checks nothing. ValueError on bad files,
    naming the file: each must be a regular file of at most 16 MiB, checked before it is opened (a
    FIFO would block, /dev/zero never end), and a key must not be encrypted (OpenSSL would prompt for
    its pass phrase on the terminal)."""
    for flag, path in (("--ca-file", opts.ca_file), ("--cert", opts.cert), ("--key", opts.key)):
        if path is not None:
            _check_file(flag, path)
    try:
        ctx = ssl.create_default_context(cafile=opts.ca_file)
        if opts.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if opts.cert is not None:
            ctx.load_cert_chain(opts.cert, opts.key, password=_no_pass_phrase)
    except _Encrypted:
        raise ValueError(
            f"TLS setup failed: the key {opts.key or opts.cert} is encrypted; give an unencrypted one "
            "(openssl pkey -in KEY -out PLAIN.pem)"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"TLS setup failed: {exc}") from None
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


_MAX_TLS_FILE = 16 << 20  # a CA bundle is about 200 KB


class _Encrypted(Exception):
    pass


def _no_pass_phrase() -> str:
    raise _Encrypted


def _check_file(flag: str, path: str) -> None:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ValueError(f"TLS setup failed: {flag} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"TLS setup failed: {flag} {path}: not a regular file")
    if st.st_size > _MAX_TLS_FILE:
        raise ValueError(f"TLS setup failed: {flag} {path}: {st.st_size:,} bytes, more than a TLS file may be")
