"""``python -m bench.power``: how often ``compare`` decides, and how right it is, by simulation.
The simulation is testsupport/power.py, shared with tests/test_compare.py (see its doc for the options)."""

from __future__ import annotations

from testsupport.power import main

if __name__ == "__main__":
    raise SystemExit(main())
