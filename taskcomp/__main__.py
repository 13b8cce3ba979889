"""``python -m taskcomp``: the same as the ``taskcomp`` command (what ``torchrun -m taskcomp ...`` starts)."""

import sys

from .cli import main

sys.exit(main())
