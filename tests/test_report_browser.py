"""The HTML report in a real headless Chromium with no network: the charts draw, nothing errors.

Skipped (with the reason) only on a developer machine without /usr/bin/chromium; in CI (CI=true)
it must run: .ci/run installs Debian's chromium package when it is missing.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from sseprobe._report_html import PALETTE, write_report

from .report_docs import results_doc

CHROMIUM = "/usr/bin/chromium"

if not os.access(CHROMIUM, os.X_OK) and os.environ.get("CI") != "true":
    pytest.skip(
        f"{CHROMIUM} not installed (apt-get install chromium); CI installs it and runs this test",
        allow_module_level=True,
    )

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--enable-logging=stderr",
    "--v=0",
    "--window-size=1100,3200",
]


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )


def _console_errors(stderr: str) -> list[str]:
    """Page-level problems Chromium logs: console messages from the page, uncaught errors, CSP refusals."""
    return [
        ln
        for ln in stderr.splitlines()
        if "CONSOLE" in ln or "Uncaught" in ln or "Refused to" in ln or "Content Security Policy" in ln
    ]


def _png_pixels(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, bytes per pixel, raw unfiltered pixels) of a non-interlaced 8-bit RGB(A) PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = bpp = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and color in (2, 6) and interlace == 0
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    out = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out[y * stride : (y + 1) * stride] = line
        prev = line
    return width, height, bpp, bytes(out)


def _count_color(pixels: bytes, bpp: int, hex_color: str, tol: int = 40) -> int:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    n = 0
    for i in range(0, len(pixels), bpp):
        if abs(pixels[i] - r) <= tol and abs(pixels[i + 1] - g) <= tol and abs(pixels[i + 2] - b) <= tol:
            n += 1
    return n


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    return write_report([("compare-nightly.json", results_doc())], tmp / "report.html")


def test_charts_draw_in_chromium_with_no_console_errors(report: Path, tmp_path: Path) -> None:
    proc = _chromium(tmp_path, "--dump-dom", report.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert _console_errors(proc.stderr) == []
    svgs = re.findall(r"<svg\b.*?</svg>", dom, flags=re.S)
    assert len(svgs) >= 5  # TTFE, completion, TTFE over time, outcomes over time, outcome bars
    for svg in svgs:
        ds = re.findall(r'<path d="([^"]*)"', svg)
        assert ds and all(d.strip() for d in ds)
    ttfe = dom.split('id="ttfe"')[1].split('id="completion"')[0]
    assert "canonical" in ttfe and "legacy" in ttfe


def test_screenshot_shows_both_cohorts_lines(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    proc = _chromium(tmp_path, f"--screenshot={shot}", report.as_uri())
    assert shot.exists(), proc.stderr[-2000:]
    assert _console_errors(proc.stderr) == []
    width, height, bpp, pixels = _png_pixels(shot.read_bytes())
    assert width >= 1000 and height >= 3000
    white = sum(
        1 for i in range(0, len(pixels), bpp * 7) if pixels[i] > 245 and pixels[i + 1] > 245 and pixels[i + 2] > 245
    )
    assert white < 0.98 * (len(pixels) // (bpp * 7))  # not a blank page
    # both cohorts' lines are on the page in their colours (canonical, legacy)
    for color in PALETTE[:2]:
        assert _count_color(pixels, bpp, color) > 500, color


def test_the_error_check_is_not_vacuous(tmp_path: Path) -> None:
    """A page that fetches and throws is caught by the same stderr check."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; script-src 'unsafe-inline'\"></head><body>"
        "<img src=\"http://example.invalid/x.png\"><script>throw new Error('boom')</script></body></html>"
    )
    proc = _chromium(tmp_path, "--dump-dom", bad.as_uri())
    errors = _console_errors(proc.stderr)
    assert any("boom" in e for e in errors) and any("Content Security Policy" in e for e in errors), proc.stderr[-2000:]
