"""Every use of another library's private names, fenced in one place.

lrtune needs a few things that Optuna, Lightning, torch, torchmetrics, PyMySQL and numpy do
not offer publicly. Each is wrapped here in a small function or class with a docstring that
says what it reaches for and why, and ``tests/test_compat.py`` has one test per wrapper that
fails loudly, naming the private name, when a release of that library moves it. No module of
lrtune outside this package touches another library's private names
(``tests/test_architecture.py`` checks it).

- ``_core`` (core layer): Optuna (study and trial ids, a study's storage, TPE's
  constant-liar attrs, the group decomposition, journal op codes, a logger name), torch (a
  scheduler's last LRs, a compiled module's original), PyMySQL (the read timeout of an
  open connection) and numpy (the names a pickled array refers to).
- ``_lightning`` (Lightning layer): Lightning (the placeholder optimizer, a module's
  Trainer, the batch-transfer hook, the validation loaders given to ``fit``) and
  torchmetrics (a metric's update count).

This ``__init__`` imports nothing, so importing the core half never imports Lightning.
"""
