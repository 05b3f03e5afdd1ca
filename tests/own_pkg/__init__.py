"""Users' own Lightning code for the tests of class-path modules (no lrtune imports)."""
