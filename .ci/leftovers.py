"""Leftovers no commit may carry, in every file git tracks: merge-conflict markers, trailing whitespace,
a missing or doubled final newline (what pre-commit-hooks' check-merge-conflict, trailing-whitespace
and end-of-file-fixer check). One line per finding; exit 1 if any."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

_MARKER = re.compile(rb"^(<<<<<<< |=======$|>>>>>>> |\|\|\|\|\|\|\| )", re.M)


def problems(path: Path) -> list[str]:
    data = path.read_bytes()
    if b"\0" in data[:8192]:  # binary
        return []
    found = []
    if data and not data.endswith(b"\n"):
        found.append("no newline at the end of the file")
    if data.endswith(b"\n\n"):
        found.append("blank lines at the end of the file")
    for n, line in enumerate(data.split(b"\n"), 1):
        if _MARKER.match(line):
            found.append(f"line {n}: a merge-conflict marker")
        if line.rstrip(b"\r").endswith((b" ", b"\t")):
            found.append(f"line {n}: trailing whitespace")
    return found


def main() -> int:
    files = subprocess.run(["git", "ls-files", "-z"], capture_output=True, check=True).stdout.split(b"\0")
    bad = 0
    for name in filter(None, files):
        path = Path(name.decode())
        if path.is_file():
            for problem in problems(path):
                print(f"{path}: {problem}")
                bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
