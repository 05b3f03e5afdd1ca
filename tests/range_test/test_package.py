"""The range test's one home (issue 25): the public names, the old names and import paths
that stay as aliases, and the one lean-Trainer builder that find_lr shares with training."""

from __future__ import annotations

import importlib

import pytest

import lrtune
from lrtune._trainer import check_options, lean_trainer, options_for
from lrtune.config import TrainConfig
from lrtune.errors import ConfigError


def test_old_names_and_import_paths_are_the_same_objects() -> None:
    import lrtune.range_test as home
    from lrtune.range_test import _callback, _find, _tuner

    assert lrtune.LRFinderResult is lrtune.RangeTestResult is home.RangeTestResult
    old = {
        "lrtune.lr_range": (home, ("LRFinderResult", "RangeTestResult", "analyze")),
        "lrtune.callbacks": (_callback, ("LRRangeTest", "LRFinder")),
        "lrtune.finder": (_find, ("find_lr", "compare_optimizers")),
        "lrtune.tuner": (_tuner, ("lr_find",)),
    }
    for path, (new, names) in old.items():
        for name in names:
            assert getattr(importlib.import_module(path), name) is getattr(new, name), name
            assert getattr(lrtune, name, None) in (None, getattr(new, name)), name


def test_the_package_init_stays_core() -> None:
    """Importing the math does not import Lightning (a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import sys, lrtune.range_test as r; r.analyze; "
        "print(any(m.split('.')[0] in ('lightning', 'pytorch_lightning') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_find_lr_and_the_callback_keep_a_small_signature() -> None:
    """Lightning's lr_find takes 13 parameters and its callback 7; find_lr at most 15."""
    import inspect

    assert len(inspect.signature(lrtune.find_lr).parameters) <= 15
    assert len(inspect.signature(lrtune.LRRangeTest).parameters) <= 16


def test_unknown_trainer_option_names_the_option() -> None:
    with pytest.raises(ConfigError, match=r"find_lr: unknown Trainer option 'max_epoch'"):
        check_options({"max_epoch": 1}, "find_lr")
    assert check_options({"precision": "bf16-mixed"}, "x") == {"precision": "bf16-mixed"}


def test_lean_trainer_maps_devices_and_drops_unset_values() -> None:
    trainer = lean_trainer(
        accelerator="cpu",
        precision=None,
        gradient_clip_val=0.5,
        max_epochs=2,
    )
    assert trainer.logger is None and trainer.checkpoint_callback is None
    assert trainer.num_sanity_val_steps == 0 and trainer.max_epochs == 2
    assert trainer.gradient_clip_val == 0.5
    assert str(trainer.gradient_clip_algorithm.value) == "norm"
    assert trainer.precision == "32-true"


def test_options_for_a_config_carry_device_precision_and_clipping() -> None:
    config = TrainConfig.model_validate(
        {"device": "cpu", "precision": "bf16-mixed", "clip": {"kind": "value", "threshold": 2.0}}
    )
    assert options_for(config) == {
        "accelerator": "cpu",
        "precision": "bf16-mixed",
        "gradient_clip_val": 2.0,
        "gradient_clip_algorithm": "value",
    }
    plain = TrainConfig.model_validate({"device": "cpu"})
    assert "gradient_clip_val" not in options_for(plain)
