"""A user's own Lightning code: a digits classifier and its datamodule (no lrtune imports)."""
