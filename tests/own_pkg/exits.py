"""A user's module that calls ``sys.exit(0)`` at import (a script that was imported)."""

import sys

sys.exit(0)
