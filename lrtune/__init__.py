"""lrtune: learning-rate range tests and Optuna studies for PyTorch Lightning models."""

from __future__ import annotations

__version__ = "0.1.0"
