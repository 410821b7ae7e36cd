"""``python -m bench.contract``: the verdict's contract, measured (docs/statistics.md).
The simulation is testsupport/contract.py, shared with tests/test_compare.py (see its doc for the options)."""

from __future__ import annotations

from testsupport.contract import main

if __name__ == "__main__":
    raise SystemExit(main())
