"""``python -m lrtune.cli``: the same as the ``lrtune`` command."""

import sys

from lrtune.cli import main

sys.exit(main())
