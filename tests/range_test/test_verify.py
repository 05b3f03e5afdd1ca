"""The verification stage of the range test (``verify=True``): candidates, probes with
successive halving, the winner, and everything restored as after a plain sweep."""

from __future__ import annotations

import math
import random
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from lrtune import LRRangeTest, find_lr
from lrtune.config import TrainConfig
from lrtune.data import DigitsDataModule
from lrtune.errors import ConfigError
from lrtune.module import ClassifierModule
from lrtune.range_test import RangeTestResult, fit_probe, probe_candidates
from lrtune.range_test._verify import Verification, _confirm, clear_winner


def _module(optimizer: str = "momentum", schedule: str = "constant") -> ClassifierModule:
    config = TrainConfig(
        model="mlp", model_options={"width": 32}, optimizer={"name": optimizer},
        schedule={"name": schedule}, epochs=1,
    )  # fmt: skip
    torch.manual_seed(0)
    return ClassifierModule.from_config(config, (1, 8, 8), 10)


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_candidates_are_spaced_from_the_suggestion_up_and_stop_at_the_edge() -> None:
    lrs = [10 ** (-4 + 0.05 * i) for i in range(81)]  # 1e-4 .. 1
    smoothed = [abs(math.log10(lr) + 1.0) for lr in lrs]  # lowest at 0.1: the edge
    out = probe_candidates(lrs, smoothed, 1e-2, count=5)  # 0.215 is above the edge
    assert out == pytest.approx([1e-2 * 10 ** (k / 3) for k in (0, 1, 2, 3)])
    below = probe_candidates(lrs, smoothed, 1e-2, count=5, spacing=1 / 3, below=1)
    assert below == pytest.approx([1e-2 * 10 ** (k / 3) for k in (-1, 0, 1, 2, 3)])
    # at the edge already: the suggestion and one step above it, never fewer than 2
    capped = probe_candidates(lrs, smoothed, 0.05, count=5)
    assert capped == pytest.approx([0.05, 0.05 * 10 ** (1 / 3)])
    capped_below = probe_candidates(lrs, smoothed, 0.05, count=5, below=1)
    assert capped_below == pytest.approx([0.05 / 10 ** (1 / 3), 0.05])
    reached = probe_candidates(lrs, smoothed, 0.05, count=5, reach=3.0)
    assert reached == pytest.approx([0.05 * 10 ** (k / 3) for k in (0, 1, 2)])
    with pytest.raises(ConfigError, match="probe candidates"):
        probe_candidates(lrs, smoothed, 0.05, count=0)


def test_grid_candidates_are_the_same_for_nearby_suggestions() -> None:
    lrs = [10 ** (-4 + 0.05 * i) for i in range(81)]
    smoothed = [abs(math.log10(lr) + 0.5) for lr in lrs]  # the edge at 0.316
    grid = [10 ** (k / 3) for k in (-6, -5, -4, -3, -2)]  # 0.01 .. 0.215
    for suggestion in (0.0085, 0.01, 0.0121):  # within a sixth of a decade of 0.01
        out = probe_candidates(lrs, smoothed, suggestion, count=5, grid=True)
        assert out == pytest.approx(grid)
    # the offset shifts the grid by that many steps, so it can avoid a given set of LRs
    shifted = probe_candidates(lrs, smoothed, 0.01, count=5, grid=True, offset=0.25)
    assert shifted == pytest.approx([10 ** ((k + 0.25) / 3) for k in (-6, -5, -4, -3, -2)])
    # relative candidates follow the suggestion
    assert probe_candidates(lrs, smoothed, 0.0121, count=5)[0] == pytest.approx(0.0121)


def test_a_higher_lr_wins_only_when_it_wins_clearly() -> None:
    low, mid, high = 0.01, 0.0215, 0.0464
    noisy = [0.50, 0.40, 0.60, 0.45, 0.55, 0.50, 0.42, 0.58]
    shake = [-0.1, 0.09, -0.08, 0.1, -0.09, 0.08, -0.1, 0.06]
    # clearly lower on every batch: the higher LR wins
    winner, why = clear_winner({low: noisy, mid: [v - 0.2 for v in noisy]}, margin=2.0)
    assert winner == mid and "lowest held-out loss" in why
    # lower on average, but within the noise of the per-batch difference: the lower LR
    jitter = [v + d for v, d in zip(noisy, shake, strict=True)]
    winner, why = clear_winner({low: noisy, mid: jitter}, margin=2.0)
    assert np.mean(jitter) < np.mean(noisy) and winner == low
    assert "kept over" in why and "standard errors" in why
    # margin 0: the lowest mean wins, ties to the smaller LR
    assert clear_winner({low: noisy, mid: jitter}, margin=0.0)[0] == mid
    assert clear_winner({low: noisy, mid: list(noisy)}, margin=0.0)[0] == low
    # diverged probes (no scores) never win; none finite: no winner
    assert clear_winner({low: [], high: noisy}, margin=2.0)[0] == high
    assert clear_winner({low: [], mid: []}, margin=2.0) == (None, "every probe diverged")


class _FakeProber:
    """Stands in for the probes: each LR's training losses and held-out scores, given."""

    def __init__(self, losses: dict[float, list[float]], scores: dict[float, list[float]]):
        self.losses, self.scores, self.calls = losses, scores, []
        self._lr = 0.0

    def run(self, lr: float, start: int, end: int, state: object) -> tuple[list, str | None]:
        self.calls.append((lr, start, end, state is not None))
        self._lr = lr
        out = self.losses[lr]
        bad = [i for i, v in enumerate(out) if not math.isfinite(v)]
        return (out[: bad[0]], f"its loss was nan at step {start + bad[0]}") if bad else (out, None)

    def score(self) -> list[float]:
        return self.scores[self._lr]


def test_confirmation_rejects_a_late_blow_up_and_steps_down() -> None:
    candidates = [0.01, 0.0215, 0.0464]
    flat = [1.0 - 0.001 * i for i in range(50)]
    at_probe_end = {0.0215: [0.52] * 4 + [0.50] * 4, 0.0464: [0.42] * 4 + [0.40] * 4}
    prober = _FakeProber(
        losses={0.0464: flat, 0.0215: flat},
        scores={0.0464: [0.9, 1.1] * 4, 0.0215: [0.45, 0.43] * 4},  # 0.0464 turned up
    )
    probes: list[dict[str, float]] = []
    lr, rejected = _confirm(
        prober, 0.0464, candidates, at_probe_end,  # type: ignore[arg-type]
        saved={0.0464: ({}, {}), 0.0215: ({}, {})}, done=dict.fromkeys(candidates, 50),
        horizon=100, margin=2.0, probes=probes,
    )  # fmt: skip
    assert lr == 0.0215
    assert rejected == [
        "0.0464 rejected over 100 steps: its held-out loss turned up from 0.41 to 1 "
        "between steps 50 and 100"
    ]
    assert prober.calls == [(0.0464, 50, 100, True), (0.0215, 50, 100, True)]
    assert [(p["lr"], p["confirm"]) for p in probes] == [(0.0464, 0.0), (0.0215, 1.0)]
    # a NaN, then a spike: both rejected; the sweep's own suggestion is not confirmed
    spike = flat[:30] + [50.0] * 20
    prober = _FakeProber(losses={0.0464: [*flat[:10], math.nan], 0.0215: spike}, scores={})
    lr, rejected = _confirm(
        prober, 0.0464, candidates, {}, saved={}, done=dict.fromkeys(candidates, 50),  # type: ignore[arg-type]
        horizon=100, margin=2.0, probes=[],
    )  # fmt: skip
    assert lr == 0.01 and len(rejected) == 2
    assert "its loss was nan at step 10" in rejected[0]
    assert "its training loss spiked" in rejected[1]
    assert prober.calls == [(0.0464, 0, 100, False), (0.0215, 0, 100, False)]


def _parabola_probes(vertex: float, steps: float = 16.0) -> list[dict[str, float]]:
    """Probes at 0.01 x 10^(k/3), k = -1..1, losses on a parabola (in log10 LR) with its
    minimum ``vertex`` spacings above 0.01."""
    return [
        {"lr": 0.01 * 10 ** (k / 3), "steps": steps, "loss": 1.0 + (k - vertex) ** 2}
        for k in (-1, 0, 1)
    ]


def test_fit_moves_the_winner_to_the_vertex_within_half_a_spacing() -> None:
    assert fit_probe(_parabola_probes(0.2), 0.01) == pytest.approx(0.01 * 10 ** (0.2 / 3))
    assert fit_probe(_parabola_probes(-0.3), 0.01) == pytest.approx(0.01 * 10 ** (-0.1))
    assert fit_probe(_parabola_probes(0.9), 0.01) == pytest.approx(0.01 * 10 ** (0.5 / 3))
    # not convex, or a neighbour missing or diverged: the winner as it is
    concave = [{**p, "loss": -p["loss"]} for p in _parabola_probes(0.0)]
    assert fit_probe(concave, 0.01) == 0.01
    assert fit_probe(_parabola_probes(0.2)[:2], 0.01) == 0.01
    diverged = _parabola_probes(0.2)
    diverged[2]["loss"] = math.nan
    assert fit_probe(diverged, 0.01) == 0.01
    # the longest probes that scored all three decide
    longer = _parabola_probes(-0.4, steps=32.0)
    assert fit_probe(_parabola_probes(0.2) + longer, 0.01) == pytest.approx(0.01 * 10 ** (-0.4 / 3))
    assert fit_probe(_parabola_probes(0.2) + longer[:2], 0.01) == pytest.approx(
        0.01 * 10 ** (0.2 / 3)
    )


def test_rungs_halve_the_steps_and_the_candidates() -> None:
    assert Verification(steps=32, rungs=3).rung_steps() == [8, 16, 32]
    assert Verification().resolved(100).rung_steps() == [25, 50]
    assert Verification().resolved(100).confirm_steps() == 100
    assert Verification(steps=8, rungs=1, confirm=None).confirm_steps() is None
    plan = Verification(steps=16, rungs=3, fit=True, margin=0.0, confirm=None)
    result = find_lr(
        _module("adam"), datamodule=DigitsDataModule(batch_size=64), min_lr=1e-5,
        max_lr=1.0, num_steps=40, verify=plan,
    )  # fmt: skip
    per_rung = {s: [p for p in result.probes if p["steps"] == s] for s in (4.0, 8.0, 16.0)}
    counts = [len(v) for v in per_rung.values()]
    assert counts[0] >= 2 and counts[1] <= max(2, math.ceil(counts[0] * 0.4))
    assert counts[2] <= max(2, math.ceil(counts[1] * 0.4)) and counts[2] >= 1
    winner = min(per_rung[16.0], key=lambda p: (p["loss"], p["lr"]))["lr"]
    assert result.suggestion == fit_probe(result.probes, winner)
    assert "fitted" in result.reason


def test_keep_sets_how_many_candidates_go_on() -> None:
    def second_rung(keep: float) -> tuple[int, int]:
        result = find_lr(
            _module("adam"), datamodule=DigitsDataModule(batch_size=64), min_lr=1e-5,
            max_lr=1.0, num_steps=40,
            verify=Verification(steps=8, keep=keep, grid=True, confirm=None, baseline=False),
        )  # fmt: skip
        first = [p for p in result.probes if p["steps"] == 4.0]
        return len(first), len(result.probes) - len(first)

    few, many = second_rung(0.4), second_rung(0.7)
    assert few[0] == many[0] >= 3  # the same candidates
    assert few[1] == max(2, math.ceil(few[0] * 0.4)) and many[1] == math.ceil(many[0] * 0.7)
    assert many[1] > few[1]


def test_find_lr_verifies_with_successive_halving_and_restores_everything() -> None:
    dm = DigitsDataModule(batch_size=64)
    plain = find_lr(_module(), datamodule=dm, min_lr=1e-4, max_lr=10.0, num_steps=60, verify=False)
    module = _module()
    before = _weights(module)
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    result = find_lr(
        module, datamodule=DigitsDataModule(batch_size=64), min_lr=1e-4, max_lr=10.0,
        num_steps=60, verify=Verification(steps=16),
    )  # fmt: skip
    # the sweep is the same; the verification only adds probes
    assert result.lrs == plain.lrs and result.losses == plain.losses
    assert result.sweep_suggestion == plain.suggestion
    first = [p for p in result.probes if p["steps"] == 8]
    last = [p for p in result.probes if p["steps"] == 16 and "confirm" not in p]
    confirmed = [p for p in result.probes if "confirm" in p]
    candidates = probe_candidates(plain.lrs, plain.smoothed, plain.suggestion)  # type: ignore[arg-type]
    assert [p["lr"] for p in first] == candidates
    # the best 2 of the first rung go on, and the sweep's own answer always does
    ranked = sorted((p["loss"], p["lr"]) for p in first)
    kept = max(2, math.ceil(len(first) * 0.4))
    assert {p["lr"] for p in last} == {lr for _, lr in ranked[:kept]} | {candidates[0]}
    # the winner: the best of the last rung, or a lower one it does not beat clearly
    best = min(last, key=lambda p: p["loss"])["lr"]
    if not confirmed:
        assert result.suggestion in {p["lr"] for p in last} and result.suggestion <= best
    # a winner above the sweep's answer ran on to 32 steps (as long as the sweep) and was
    # confirmed, or rejected for the next candidate down
    assert all(p["steps"] == 32 for p in confirmed)
    if result.suggestion != candidates[0]:
        assert confirmed and confirmed[-1]["lr"] == result.suggestion
        assert confirmed[-1]["confirm"] == 1.0 and "confirmed over 32 steps" in result.reason
    assert "verified by" in result.reason
    # weights and random streams as before the call
    for name, value in _weights(module).items():
        assert torch.equal(value, before[name]), name
    assert torch.equal(torch.get_rng_state(), states[0])
    assert (np.random.get_state()[1] == states[1]).all() and random.getstate() == states[2]


def test_training_after_a_verified_test_is_as_without_it() -> None:
    """The callback inside fit: the probes are undone like the sweep (bit for bit)."""

    def fit(callbacks: list[pl.Callback]) -> dict[str, torch.Tensor]:
        module = _module()
        trainer = pl.Trainer(
            accelerator="cpu", max_epochs=1, limit_train_batches=6, limit_val_batches=0,
            logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=callbacks,
        )  # fmt: skip
        torch.manual_seed(3)
        trainer.fit(module, datamodule=DigitsDataModule(batch_size=32, seed=1))
        return _weights(module)

    finder = LRRangeTest(1e-4, 10.0, 40, verify=Verification(steps=8))
    with_test = fit([finder])
    assert finder.result is not None and finder.result.probes
    without = fit([])
    for name, value in without.items():
        assert torch.equal(value, with_test[name]), name


def test_a_peak_lr_target_is_not_verified() -> None:
    result = find_lr(
        _module(schedule="onecycle"), datamodule=DigitsDataModule(batch_size=64),
        min_lr=1e-4, max_lr=10.0, num_steps=40, verify=True,
    )  # fmt: skip
    assert result.target == "max" and result.probes == []
    assert result.suggestion == result.sweep_suggestion


def test_probes_round_trip_and_show_on_the_plot() -> None:
    result = find_lr(
        _module("adam"), datamodule=DigitsDataModule(batch_size=64), min_lr=1e-5,
        max_lr=1.0, num_steps=40, verify=Verification(steps=8),
    )  # fmt: skip
    again = RangeTestResult.from_dict(result.to_dict())
    assert again.probes == result.probes and again.sweep_suggestion == result.sweep_suggestion
    fig = result.plot()
    (probes,) = [t for t in fig.data if "probes" in (t.name or "")]  # type: ignore[attr-defined]
    assert list(probes.x) == [p["lr"] for p in result.probes]
    assert list(probes.y) == pytest.approx([p["loss"] for p in result.probes])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"count": 1}, "Verification.count must be >= 2, got 1"),
     ({"batches": 0}, "Verification.batches must be >= 1"),
     ({"steps": 1}, "Verification.steps must be >= 2"),
     ({"rungs": 0}, "Verification.rungs must be >= 1"),
     ({"reach": 0.5}, "Verification.reach must be >= 1"),
     ({"keep": 1.0}, "Verification.keep must be in"),
     ({"keep": 0}, "Verification.keep must be in"),
     ({"margin": -1.0}, "Verification.margin must be >= 0"),
     ({"margin": math.nan}, "Verification.margin must be >= 0"),
     ({"confirm": 1.0}, "Verification.confirm must be > 1, or None")],
)  # fmt: skip
def test_bad_verification_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Verification(**kwargs)


def test_verify_takes_a_bool_or_a_verification() -> None:
    with pytest.raises(ConfigError, match="verify must be True, False or a Verification"):
        LRRangeTest(verify="yes")  # type: ignore[arg-type]
    import lrtune

    assert lrtune.Verification is Verification


def test_find_lr_cli_verify_and_lr_auto_centre_on_the_verified_lr(tmp_path: Path) -> None:
    from lrtune.cli import main
    from lrtune.config import StudyConfig
    from lrtune.study import search

    assert main(["find-lr", "--dataset", "digits", "--optimizers", "adam", "--num-steps",
                 "40", "--verify", "--json"]) == 0  # fmt: skip
    config = StudyConfig.model_validate(
        {"name": "v", "dataset": "digits", "model": "mlp", "budget": {"epochs": 1},
         "n_trials": 1, "pruner": "none", "test": "never",
         "storage": str(tmp_path / "s.journal"),
         "space": {"optimizers": ["adam"], "lr": {"auto": True, "num_steps": 40,
                                                   "verify": True}}}
    )  # fmt: skip
    study = search(config, progress=None, publish=False)
    auto = study.user_attrs["lrtune.lr_auto"]["adam"]
    result = RangeTestResult.from_dict(auto["result"])
    assert auto["source"] == "verified range test" and result.probes
    low, high = auto["range"]
    assert math.sqrt(low * high) == pytest.approx(result.suggestion)
    bracket_low, bracket_high = result.bracket  # type: ignore[misc]
    assert high / low == pytest.approx(bracket_high * 9 / bracket_low)


def test_one_big_validation_batch_is_cut_into_chunks_for_the_score_noise() -> None:
    from lrtune.range_test._verify import split_batch

    x, y = torch.arange(20.0).view(10, 2), torch.arange(10)
    parts = split_batch((x, y), 4)
    assert [len(p[1]) for p in parts] == [3, 3, 2, 2]
    assert torch.equal(torch.cat([p[0] for p in parts]), x)
    as_dict = split_batch({"x": x, "y": y, "name": "b"}, 3)
    assert [len(p["y"]) for p in as_dict] == [4, 3, 3] and as_dict[0]["name"] == "b"
    whole = split_batch((x, torch.arange(4)), 4)  # first dimensions disagree: left whole
    assert len(whole) == 1 and whole[0][0] is x
    assert split_batch("not a tensor", 4) == ["not a tensor"]
    assert len(split_batch((x[:2], y[:2]), 8)) == 2  # never more chunks than samples
