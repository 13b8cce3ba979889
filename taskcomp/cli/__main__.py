"""``python -m taskcomp.cli``: the same as the ``taskcomp`` command (what the codec benchmark's round-trip check
starts)."""

import sys

from . import main

sys.exit(main())
