"""The range test's verification stage: short constant-LR probes from the sweep's answer up.

A range test changes the LR every step, a greedy short-horizon signal that favours LRs that
are too small; short constant-LR probes are biased the other way. So a few candidate LRs
from the sweep's suggestion up to its stability edge
(:func:`~lrtune.lr_range.probe_candidates`) each train from the same weights, optimizer
state and batches, are scored on held-out batches, and the best few train on
(successive halving); the last rung's best (:func:`~lrtune.lr_range.pick_probe`, ties to
the smaller LR) is the suggestion, refined between its neighbours when ``fit`` is on
(:func:`~lrtune.lr_range.fit_probe`). The caller restores everything afterwards.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import lightning.pytorch as pl
import torch

from lrtune._steps import (
    Snapshot,
    cycle,
    device_batches,
    group_ratios,
    held_out_loss,
    one_step,
    plain_steps,
    set_lr,
)
from lrtune.errors import ConfigError
from lrtune.lr_range import LRFinderResult, fit_probe, pick_probe, probe_candidates

__all__ = ["ProbePlan", "verify"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbePlan:
    """How to verify a sweep's suggestion.

    Args:
        steps: Optimizer steps of the last rung's probes.
        count: Candidate LRs, a third of a decade apart (default 5).
        batches: Held-out batches each probe is scored on (default 8).
        reach: Candidates go up to this factor times the stability edge (default 1).
        rungs: Successive-halving rungs (default 2); rung ``i`` of ``R`` runs
            ``steps / 2**(R-1-i)`` steps, and the best ``keep`` of the candidates go on.
        fit: Refine the winner between its neighbours (:func:`~lrtune.lr_range.fit_probe`).
        keep: Fraction of a rung's candidates that go on to the next (rounded up, at least
            2; default 0.4: the best 2 of 5).
        grid: Candidates on the fixed log grid (see :func:`~lrtune.lr_range.probe_candidates`).
    """

    steps: int
    count: int = 5
    batches: int = 8
    reach: float = 1.0
    rungs: int = 2
    fit: bool = False
    keep: float = 0.4
    grid: bool = False

    def __post_init__(self) -> None:
        if self.count < 2 or self.batches < 1 or self.steps < 2 or self.rungs < 1:
            raise ConfigError(
                "probe_count must be >= 2, probe_batches >= 1, probe_steps >= 2 and "
                f"probe_rungs >= 1; got {self.count}, {self.batches}, {self.steps}, {self.rungs}"
            )
        if self.reach < 1:
            raise ConfigError(f"probe_reach must be >= 1, got {self.reach!r}")
        if not 0 < self.keep < 1:
            raise ConfigError(f"probe_keep must be in (0, 1), got {self.keep!r}")

    def rung_steps(self) -> list[int]:
        """Cumulative steps at the end of each rung, increasing."""
        ends = [max(1, self.steps // 2 ** (self.rungs - 1 - i)) for i in range(self.rungs)]
        return sorted(set(ends))


def held_out_batches(
    trainer: pl.Trainer, module: pl.LightningModule, stream: Iterator[tuple[int, Any]], count: int
) -> list[Any]:
    """Batches to score probes on: the validation split's first ``count`` when the
    datamodule has one, else the next training batches (no probe trains on them)."""
    from lrtune.components import overrides

    batches: list[Any] = []
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None and overrides(datamodule, "val_dataloader"):
        try:
            val = datamodule.val_dataloader()
        except Exception:  # a datamodule that cannot make one now: use training data
            val = None
        for batch in device_batches(trainer, module, val or ()):
            batches.append(batch)
            if len(batches) == count:
                break
    if not batches:
        batches = [next(stream)[1] for _ in range(count)]
    return batches


def verify(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    optimizer: torch.optim.Optimizer,
    loader: Any,
    snapshot: Snapshot,
    result: LRFinderResult,
    plan: ProbePlan,
    finder: pl.Callback,
) -> LRFinderResult:
    """Probe candidate constant LRs with successive halving; the winner is the suggestion.

    Every probe starts from ``snapshot`` (weights, optimizer state, RNG) and trains on the
    same batches; the caller restores everything afterwards.
    """
    assert result.suggestion is not None
    candidates = probe_candidates(
        result.lrs, result.smoothed, result.suggestion, count=plan.count, reach=plan.reach,
        grid=plan.grid,
    )  # fmt: skip
    snapshot.restore(trainer, module, loader)  # the probes see the sweep's batches
    ratios = group_ratios(optimizer)
    accumulate = max(1, int(trainer.accumulate_grad_batches))
    stream = cycle(trainer, module, loader)
    rungs = plan.rung_steps()
    train = [next(stream) for _ in range(rungs[-1] * accumulate)]
    held = held_out_batches(trainer, module, stream, plan.batches)
    direct = plain_steps(trainer, module, finder)
    alive, done = list(candidates), dict.fromkeys(candidates, 0)
    saved: dict[float, tuple[dict[str, torch.Tensor], dict[str, Any]]] = {}
    probes: list[dict[str, float]] = []
    scores: dict[float, float] = {}
    for rung, steps in enumerate(rungs):
        last = rung == len(rungs) - 1
        scores = {}
        for lr in alive:
            if lr in saved:  # the best go on from where their probes stopped
                weights, state = saved.pop(lr)
                module.load_state_dict(weights)
                optimizer.load_state_dict(state)
            else:
                snapshot.restore(trainer, module, loader)
            set_lr(optimizer, lr, ratios)
            module.train()
            batches = iter(train[done[lr] * accumulate : steps * accumulate])
            loss: float | None = 0.0
            for _ in range(steps - done[lr]):
                loss = one_step(trainer, module, optimizer, batches, direct=direct,
                                accumulate=accumulate)  # fmt: skip
                if loss is not None and not math.isfinite(loss):
                    break
            done[lr] = steps
            ok = loss is None or math.isfinite(loss)
            scores[lr] = held_out_loss(trainer, module, held) if ok else math.nan
            probes.append({"lr": lr, "steps": float(steps), "loss": scores[lr]})
            if not last:
                saved[lr] = (
                    {k: v.detach().clone() for k, v in module.state_dict().items()},
                    copy.deepcopy(optimizer.state_dict()),
                )
        ranked = sorted((s, lr) for lr, s in scores.items() if math.isfinite(s))
        alive = [lr for _, lr in ranked[: max(2, math.ceil(len(alive) * plan.keep - 1e-9))]]
        saved = {lr: saved[lr] for lr in alive if lr in saved}  # the others are done
        if len(alive) < 2:
            break
    winner = pick_probe(scores)
    if winner is None:
        kept = f"{result.reason}; verification: every probe diverged, the sweep's LR kept"
        return replace(result, probes=probes, reason=kept)
    chosen = fit_probe(probes, winner) if plan.fit else winner
    log.info("LR range test: verified %.3g over %d probes (sweep said %.3g)",
             chosen, len(probes), result.suggestion)  # fmt: skip
    return replace(
        result, suggestion=chosen, probes=probes,
        reason=f"{result.method} method, verified by {len(candidates)} candidate LRs "
        f"({len(probes)} constant-LR probes of up to {rungs[-1]} steps, held-out loss"
        f"{', fitted' if plan.fit else ''})",
    )  # fmt: skip
