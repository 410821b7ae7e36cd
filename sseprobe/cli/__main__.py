"""``python -m sseprobe.cli``: the command line, as the ``sseprobe`` script runs it."""

import sys

from . import main

sys.exit(main())
