"""The HTML report in a real headless Chromium with no network: the charts draw, nothing errors.

Skipped (with the reason) only on a developer machine without /usr/bin/chromium; in CI (CI=true)
it must run: .ci/run installs Debian's chromium package when it is missing.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from sseprobe.report.html import PALETTE, render_report, write_report
from sseprobe.verdict.schema import ResultsDocument

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
]


def _chromium(tmp: Path, *args: str, width: int = 1100) -> subprocess.CompletedProcess[str]:
    profile = tmp / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--window-size={width},3200", f"--user-data-dir={profile}", *args],
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


# --- layout, measured in the browser --------------------------------------------------------------

# Run by the page at load: the page's and each table box's widths, and every SVG text's box against its SVG's
# box (screen pixels, so the rotated axis title counts as drawn). Written into the DOM for --dump-dom to carry out.
_MEASURE = """
addEventListener("load", () => {
  const de = document.documentElement;
  const out = {viewport: de.clientWidth, page: de.scrollWidth, boxes: [], outside: [], texts: 0, past: []};
  for (const d of document.querySelectorAll(".scroll")) out.boxes.push([d.scrollWidth, d.clientWidth]);
  const body = document.body;
  const column = body.getBoundingClientRect().right - parseFloat(getComputedStyle(body).paddingRight);
  for (const t of document.querySelectorAll("table")) {
    const right = t.getBoundingClientRect().right;
    if (right > column + 0.5) out.past.push(right - column);
  }
  for (const svg of document.querySelectorAll("svg")) {
    const b = svg.getBoundingClientRect();
    for (const t of svg.querySelectorAll("text")) {
      const r = t.getBoundingClientRect();
      out.texts += 1;
      if (r.left < b.left - 0.5 || r.right > b.right + 0.5 || r.top < b.top - 0.5 || r.bottom > b.bottom + 0.5)
        out.outside.push(t.textContent);
    }
  }
  const pre = document.createElement("pre");
  pre.id = "measured";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
"""


def _measure(page: str, tmp: Path, width: int) -> dict[str, Any]:
    """Lay the page out in Chromium at ``width`` px and return what the script above measured.

    The report forbids scripts (its Content-Security-Policy); this copy drops that one header to let the
    measuring script run: the markup and styles being measured are the report's own."""
    page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page, count=1)
    copy = tmp / f"measure-{width}.html"
    copy.write_text(page.replace("</body>", f"<script>{_MEASURE}</script></body>"))
    proc = _chromium(tmp, "--dump-dom", copy.as_uri(), width=width)
    found = re.search(r'<pre id="measured">(.*?)</pre>', proc.stdout, flags=re.S)
    assert found, proc.stderr[-2000:]
    return dict(json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")))


def _hard_doc() -> ResultsDocument:
    """What tripped the first user: a long-tailed cohort (axis out to 99.9999 %), a change that rounds to
    zero from below, and intervals open at one end."""
    doc: Any = results_doc()  # cut by hand: metric rows with only some keys
    h = HdrHistogram(1, 3_600_000_000, 3)
    h.record_value(40_000, 199_000)
    h.record_value(90_000, 900)
    h.record_value(2_000_000, 100)
    cohort = doc["cohorts"]["canonical"]
    cohort["histograms"]["ttfe_us"] = h.encode().decode()
    # the counts to match the 200,000 sessions the histogram holds (a saved document is checked on reading)
    cohort.update(
        sessions=200_000, attempts=200_000, connected=200_000, outcomes={"ok": 199_000, "stream_error": 1_000}
    )
    doc["verdict"]["metrics"] += [
        {"name": "connect_success_rate", "baseline": 1.0, "candidate": 1.0, "change": -1e-7, "ci": [-0.15, 0.15]},
        {"name": "ttfe_p95_ms", "baseline": 100.0, "candidate": 72.4, "change": -0.276, "ci": [-1.0, None]},
        {"name": "ttfe_p99_ms", "baseline": 100.0, "candidate": 90.0, "change": -0.1, "ci": [None, 0.2]},
    ]
    return doc


@pytest.fixture(scope="module")
def hard_page() -> str:
    doc = _hard_doc()
    long_name = "monitor-20260101T030000Z-staging-europe-west1-canary-5-percent.json"
    return render_report([("compare-nightly.json", doc), (long_name, results_doc(seed=2))])


def test_layout_fits_the_page_at_1280_px(hard_page: str, tmp_path: Path) -> None:
    m = _measure(hard_page, tmp_path, 1280)
    assert m["page"] <= m["viewport"], m  # no horizontal scrolling of the page
    assert m["past"] == [], m  # every table fits the page column
    assert m["boxes"] and all(scroll <= client + 1 for scroll, client in m["boxes"]), m  # with nothing to scroll
    assert m["texts"] > 50 and m["outside"] == [], m  # every axis (and bar) label inside its SVG


def test_narrow_window_scrolls_tables_not_the_page(hard_page: str, tmp_path: Path) -> None:
    m = _measure(hard_page, tmp_path, 640)
    assert m["page"] <= m["viewport"], m
    assert any(scroll > client for scroll, client in m["boxes"]), m  # the wide tables scroll in their own box
    assert m["outside"] == [], m  # charts shrink with the column, labels and all


def test_the_layout_measure_is_not_vacuous(tmp_path: Path) -> None:
    """The same measurement flags a page that overflows and a label drawn past its SVG's edge."""
    bad = (
        "<!DOCTYPE html><html><body><div style='width:2000px'>wide</div>"
        '<svg width="100" height="50" viewBox="0 0 100 50"><text x="90" y="20">99.999%</text></svg></body></html>'
    )
    m = _measure(bad, tmp_path, 1280)
    assert m["page"] > m["viewport"] and m["outside"] == ["99.999%"], m


def test_numbers_read_as_words_where_they_should(hard_page: str) -> None:
    """A change that rounds to zero is 0.00, never -0.00; an open interval says which bound is missing."""
    verdict = hard_page.split('id="verdict"')[1].split('id="summary"')[0]
    cells = re.findall(r"<td>([^<]*)</td>", verdict)  # the numbers (reasons are the comparator's words, kept)
    assert "0.00 pp" in cells and not [c for c in cells if re.search(r"[-+]0\.0+\b", c)], cells
    assert "from -100.0 %, no upper bound" in verdict and "no lower bound, up to +20.0 %" in verdict
    assert "inf" not in verdict and "[–" not in verdict
