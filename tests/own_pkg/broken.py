"""A user's module that fails while it is imported."""

raise RuntimeError("cannot import: the user's settings are missing")
