"""The range test's verification stage: short constant-LR probes from the sweep's answer up,
a clear-win rule that prefers the lower LR, and a confirmation of the winner over a longer
horizon.

A range test changes the LR every step, a greedy short-horizon signal that favours LRs that
are too small; short constant-LR probes are biased the other way (a probe a few dozen steps
long does not last long enough to show a late divergence). So:

1. a few candidate LRs from the sweep's suggestion up to its stability edge
   (:func:`~lrtune.range_test.probe_candidates`) each train from the same weights, optimizer
   state and batches, are scored on the same held-out batches, and the best few train on
   (successive halving);
2. the sweep's own suggestion always reaches the last rung (``baseline``); of the last rung,
   the lowest LR that the best one does not beat by more than ``margin`` standard errors of
   the paired, per-batch difference wins (default 0: the lowest held-out loss);
3. a winner above the sweep's suggestion trains on to ``confirm`` times the probe length
   and must stay healthy there: every loss finite, no spike of the training loss
   (:class:`~lrtune.range_test.DivergenceRule`), and a held-out loss that has not turned up
   beyond its noise. A winner that fails loses to the next candidate down, which is
   confirmed the same way; the sweep's own suggestion needs no confirmation.

The caller restores everything afterwards.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from lrtune._compat._lightning import fit_val_source
from lrtune.errors import ConfigError
from lrtune.range_test import DivergenceRule, RangeTestResult, fit_probe, probe_candidates
from lrtune.range_test._steps import (
    Snapshot,
    cycle,
    device_batches,
    group_ratios,
    held_out_losses,
    one_step,
    plain_steps,
    set_lr,
)

__all__ = ["Verification", "clear_winner", "verify"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verification:
    """How :func:`~lrtune.find_lr` and :class:`~lrtune.LRRangeTest` check the sweep's
    suggestion. The defaults were chosen by benchmark (docs/benchmarks-history.md, issue 19); a
    user never needs to touch them. ``verify=True`` means ``Verification()``.

    Args:
        steps: Optimizer steps of the last rung's probes (default ``None``: half the sweep,
            at least 8); each earlier rung runs half as many.
        count: Candidate LRs, a third of a decade apart, from the sweep's suggestion up to
            its stability edge (default 5).
        batches: Held-out batches each probe is scored on (default 8): the validation
            split's when the datamodule has one, else training batches no probe trains on.
        reach: Candidates go up to this factor times the stability edge, the LR of the
            sweep's lowest smoothed loss (default 1).
        rungs: Successive-halving rungs (default 2).
        keep: Fraction of a rung's candidates that go on to the next (rounded up, at least
            2; default 0.4: the best 2 of 5).
        margin: A higher LR wins only when it lowers the held-out loss by more than this
            many standard errors of the per-batch difference; in the confirmation, the
            held-out loss may rise by this many standard errors before the winner is
            rejected (default 0: the lowest loss wins, ties to the smaller LR, and any
            rise rejects. A margin of 2 was measured too: chosen by no
            leave-one-setting-out fold, docs/benchmarks-history.md, issue 19).
        confirm: A winner above the sweep's suggestion trains on to this many times
            ``steps`` and is rejected if its loss turns non-finite or spikes, or its
            held-out loss turns up (default 2, as long as the sweep; ``None``: no
            confirmation).
        baseline: The sweep's own suggestion (the lowest candidate, the safe answer) trains
            to the last rung even when successive halving would drop it, so a higher LR must
            beat it at full probe length (default ``True``; a slow starter, e.g. RAdam or a
            BatchNorm net, can trail after a short first rung and lead later).
        fit: Refine the winner between its neighbours by a parabola (default ``False``;
            :func:`~lrtune.range_test.fit_probe`).
        grid: Candidates on the fixed log grid ``10 ** (k / 3)`` rather than relative to the
            sweep's suggestion (default ``False``).

    Raises:
        ConfigError: A value out of range (the message names the field).
    """

    steps: int | None = None
    count: int = 5
    batches: int = 8
    reach: float = 1.0
    rungs: int = 2
    keep: float = 0.4
    margin: float = 0.0
    confirm: float | None = 2.0
    baseline: bool = True
    fit: bool = False
    grid: bool = False

    def __post_init__(self) -> None:
        checks = (
            ("steps", self.steps is None or self.steps >= 2, ">= 2"),
            ("count", self.count >= 2, ">= 2"),
            ("batches", self.batches >= 1, ">= 1"),
            ("reach", _finite(self.reach) and self.reach >= 1, ">= 1"),
            ("rungs", self.rungs >= 1, ">= 1"),
            ("keep", _finite(self.keep) and 0 < self.keep < 1, "in (0, 1)"),
            ("margin", _finite(self.margin) and self.margin >= 0, ">= 0"),
            ("confirm", self.confirm is None or (_finite(self.confirm) and self.confirm > 1),
             "> 1, or None"),
        )  # fmt: skip
        for name, ok, want in checks:
            if not ok:
                raise ConfigError(
                    f"Verification.{name} must be {want}, got {getattr(self, name)!r}"
                )

    def resolved(self, sweep_steps: int) -> Verification:
        """This verification with ``steps`` filled in for a sweep of ``sweep_steps``."""
        if self.steps is not None:
            return self
        return replace(self, steps=max(8, sweep_steps // 2))

    def rung_steps(self) -> list[int]:
        """Cumulative steps at the end of each rung, increasing (``steps`` must be set)."""
        assert self.steps is not None, "call resolved() first"
        ends = [max(1, self.steps // 2 ** (self.rungs - 1 - i)) for i in range(self.rungs)]
        return sorted(set(ends))

    def confirm_steps(self) -> int | None:
        """Steps a winner trains in all before it is confirmed (``None``: no confirmation)."""
        assert self.steps is not None, "call resolved() first"
        if self.confirm is None:
            return None
        return max(self.steps + 1, round(self.steps * self.confirm))


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def as_verification(verify: bool | Verification) -> Verification | None:
    """``verify=`` of find_lr / LRRangeTest as a Verification, or ``None`` for off."""
    if isinstance(verify, Verification):
        return verify
    if isinstance(verify, bool):
        return Verification() if verify else None
    raise ConfigError(f"verify must be True, False or a Verification, got {verify!r}")


def paired_gap(worse: Sequence[float], better: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of ``worse - better``, batch by batch (same held-out batches)."""
    diff = np.asarray(worse, dtype=float) - np.asarray(better, dtype=float)
    mean = float(diff.mean())
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
    return mean, se


def clear_winner(scores: dict[float, list[float]], margin: float) -> tuple[float | None, str]:
    """The lowest LR that the best-scoring LR does not beat by more than ``margin``
    standard errors of the per-batch difference; ``None`` when no score is finite.

    Returns the LR and a few words on why it won.
    """
    finite = {lr: s for lr, s in scores.items() if s and all(math.isfinite(v) for v in s)}
    if not finite:
        return None, "every probe diverged"
    best = min(finite, key=lambda lr: (float(np.mean(finite[lr])), lr))
    for lr in sorted(finite):
        if lr >= best:
            break
        gap, se = paired_gap(finite[lr], finite[best])
        if gap <= margin * se:
            return lr, (
                f"{lr:.3g} kept over {best:.3g}: held-out loss {np.mean(finite[lr]):.4g} vs "
                f"{np.mean(finite[best]):.4g}, a gap within {margin:g} standard errors "
                f"({gap:.3g} <= {margin:g} x {se:.3g})"
            )
    others = [lr for lr in finite if lr != best]
    if not others:
        return best, f"{best:.3g} was the only finite probe"
    return best, f"{best:.3g} had the lowest held-out loss ({np.mean(finite[best]):.4g})" + (
        f", clearly below the smaller LRs' (by more than {margin:g} standard errors)"
        if margin > 0 and any(lr < best for lr in others)
        else ""
    )


def held_out_batches(
    trainer: pl.Trainer, module: pl.LightningModule, stream: Iterator[tuple[int, Any]], count: int
) -> list[Any]:
    """Batches to score probes on: the first ``count`` of the validation loaders given to
    ``fit`` or, without them, of the datamodule's (or, without one, the module's own)
    ``val_dataloader()``; else the next training batches (no probe trains on them)."""
    from lrtune.components import overrides

    batches: list[Any] = []
    datamodule = getattr(trainer, "datamodule", None)
    source = datamodule if datamodule is not None else module  # the module's own loaders
    val = _given_val_loaders(trainer)
    if val is None and overrides(source, "val_dataloader"):
        try:
            val = source.val_dataloader()
        except Exception:  # one that cannot make a loader now: use training data
            val = None
    if isinstance(val, list | tuple | dict) and val:  # several loaders: the first one
        first = next(iter(val.values())) if isinstance(val, dict) else val[0]
        val = first if isinstance(first, torch.utils.data.DataLoader) else val
    if val is not None:
        for batch in device_batches(trainer, module, val or ()):
            batches.append(batch)
            if len(batches) == count:
                break
    if not batches:
        batches = [next(stream)[1] for _ in range(count)]
    if len(batches) < count:  # one big validation batch: chunks give the score's noise
        batches = [chunk for batch in batches
                   for chunk in split_batch(batch, math.ceil(count / len(batches)))]  # fmt: skip
    return batches


def _given_val_loaders(trainer: pl.Trainer) -> Any:
    """The ``val_dataloaders`` passed to ``trainer.fit``, or ``None`` (Lightning keeps them
    in the validation loop's data source; a module or datamodule there means none)."""
    instance = fit_val_source(trainer)
    from lrtune.components import _bases  # either Lightning's (pytorch_lightning too)

    if isinstance(instance, (*_bases("LightningModule"), *_bases("LightningDataModule"))):
        return None
    return instance


def split_batch(batch: Any, parts: int) -> list[Any]:
    """``batch`` cut into up to ``parts`` smaller batches along the first dimension of
    every tensor in it (tuples, lists and dicts of tensors); ``[batch]`` when it holds no
    tensor or its tensors disagree on that dimension."""
    from lightning_utilities.core.apply_func import apply_to_collection

    sizes: set[int] = set()

    def note_size(tensor: torch.Tensor) -> None:
        if tensor.dim() > 0:
            sizes.add(tensor.shape[0])

    apply_to_collection(batch, torch.Tensor, note_size)  # walked for the sizes only
    if len(sizes) != 1 or parts < 2:
        return [batch]
    n = min(parts, sizes.pop())
    return [
        apply_to_collection(
            batch, torch.Tensor, lambda t, i=i: t.tensor_split(n)[i] if t.dim() > 0 else t
        )
        for i in range(n)
    ]


_State = tuple[dict[str, torch.Tensor], dict[str, Any]]


class _Prober:
    """Trains constant-LR probes from one snapshot on one fixed list of batches."""

    def __init__(
        self,
        trainer: pl.Trainer,
        module: pl.LightningModule,
        optimizer: torch.optim.Optimizer,
        loader: Any,
        snapshot: Snapshot,
        finder: pl.Callback,
        total_steps: int,
        held: int,
    ) -> None:
        self.trainer, self.module, self.optimizer = trainer, module, optimizer
        self.loader, self.snapshot = loader, snapshot
        snapshot.restore(trainer, module, loader)  # the probes see the sweep's batches
        self.ratios = group_ratios(optimizer)
        self.accumulate = max(1, int(trainer.accumulate_grad_batches))
        stream = cycle(trainer, module, loader)
        self.train = [next(stream) for _ in range(total_steps * self.accumulate)]
        self.held = held_out_batches(trainer, module, stream, held)
        self.direct = plain_steps(trainer, module, finder)

    def save(self) -> _State:
        return (
            {k: v.detach().clone() for k, v in self.module.state_dict().items()},
            copy.deepcopy(self.optimizer.state_dict()),
        )

    def run(
        self, lr: float, start: int, end: int, state: _State | None
    ) -> tuple[list[float], str | None]:
        """Train at ``lr`` from step ``start`` (from ``state``, or the snapshot when
        ``start`` is 0) to ``end``; return the training losses and why it failed, if it did.
        """
        if state is not None:
            self.module.load_state_dict(state[0])
            self.optimizer.load_state_dict(state[1])
        else:
            self.snapshot.restore(self.trainer, self.module, self.loader)
        set_lr(self.optimizer, lr, self.ratios)
        self.module.train()
        acc = self.accumulate
        batches = iter(self.train[start * acc : end * acc])
        losses: list[float] = []
        for step in range(start, end):
            loss = one_step(self.trainer, self.module, self.optimizer, batches,
                            direct=self.direct, accumulate=acc)  # fmt: skip
            if loss is None:
                continue
            if not math.isfinite(loss):
                return losses, f"its loss was {loss} at step {step}"
            losses.append(loss)
        return losses, None

    def score(self) -> list[float]:
        return held_out_losses(self.trainer, self.module, self.held)


def verify(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    optimizer: torch.optim.Optimizer,
    loader: Any,
    snapshot: Snapshot,
    result: RangeTestResult,
    plan: Verification,
    finder: pl.Callback,
) -> RangeTestResult:
    """Probe candidate constant LRs, pick the clear winner, confirm it over a longer horizon.

    Every probe starts from ``snapshot`` (weights, optimizer state, RNG) and trains on the
    same batches; the caller restores everything afterwards.
    """
    assert result.suggestion is not None and plan.steps is not None
    candidates = probe_candidates(
        result.lrs, result.smoothed, result.suggestion, count=plan.count, reach=plan.reach,
        grid=plan.grid,
    )  # fmt: skip
    rungs = plan.rung_steps()
    horizon = plan.confirm_steps()
    prober = _Prober(trainer, module, optimizer, loader, snapshot, finder,
                     max(rungs[-1], horizon or 0), plan.batches)  # fmt: skip
    alive, done = list(candidates), dict.fromkeys(candidates, 0)
    saved: dict[float, _State] = {}
    probes: list[dict[str, float]] = []
    scores: dict[float, list[float]] = {}
    for rung, steps in enumerate(rungs):
        last = rung == len(rungs) - 1
        scores = {}
        for lr in alive:
            _, failed = prober.run(lr, done[lr], steps, saved.pop(lr, None))
            done[lr] = steps
            scores[lr] = [] if failed else prober.score()
            mean = float(np.mean(scores[lr])) if scores[lr] else math.nan
            probes.append({"lr": lr, "steps": float(steps), "loss": mean})
            if not last or horizon is not None:
                saved[lr] = prober.save()
        ranked = sorted((float(np.mean(s)), lr) for lr, s in scores.items() if s)  # [] failed
        if not last:
            alive = [lr for _, lr in ranked[: max(2, math.ceil(len(alive) * plan.keep - 1e-9))]]
            if plan.baseline and candidates[0] not in alive and scores.get(candidates[0]):
                alive.insert(0, candidates[0])  # the safe answer always gets a full probe
            saved = {lr: saved[lr] for lr in alive if lr in saved}  # the others are done
            if len(alive) < 2:
                scores = {lr: scores[lr] for lr in alive}
                break
    winner, why = clear_winner(scores, plan.margin)
    if winner is None:
        kept = f"{result.reason}; verification: every probe diverged, the sweep's LR kept"
        return replace(result, probes=probes, reason=kept)
    rejected: list[str] = []
    if horizon is not None:
        winner, rejected = _confirm(prober, winner, candidates, scores, saved, done, horizon,
                                    plan.margin, probes)  # fmt: skip
    chosen = fit_probe(probes, winner) if plan.fit and not rejected else winner
    log.info("LR range test: verified %.3g over %d probes (sweep said %.3g)",
             chosen, len(probes), result.suggestion)  # fmt: skip
    reason = (
        f"{result.method} method, verified by {len(candidates)} candidate LRs "
        f"({sum(1 for p in probes if 'confirm' not in p)} constant-LR probes of up to "
        f"{rungs[-1]} steps, held-out loss{', fitted' if plan.fit and not rejected else ''}): {why}"
    )
    if rejected:
        reason += "; " + "; ".join(rejected)
    if horizon is not None and winner != candidates[0]:
        reason += f"; {winner:.3g} confirmed over {horizon} steps"
    return replace(result, suggestion=chosen, probes=probes, reason=reason)


def _confirm(
    prober: _Prober,
    winner: float,
    candidates: list[float],
    scores: dict[float, list[float]],
    saved: dict[float, _State],
    done: dict[float, int],
    horizon: int,
    margin: float,
    probes: list[dict[str, float]],
) -> tuple[float, list[str]]:
    """Train the winner on to ``horizon`` steps; while it fails, the next candidate down
    takes its place. The lowest candidate (the sweep's own suggestion) is not confirmed.

    Returns the confirmed LR and one line per rejected candidate.
    """
    rejected: list[str] = []
    lr = winner
    while lr != candidates[0]:
        start = done[lr] if lr in saved else 0
        before = scores.get(lr) if lr in saved else None
        losses, failed = prober.run(lr, start, horizon, saved.pop(lr, None))
        if failed is None:
            failed = _spiked(losses)
        after: list[float] = [] if failed else prober.score()
        if failed is None and not after:
            failed = "its held-out loss was not finite"
        if failed is None and before:
            gap, se = paired_gap(after, before)
            if gap > margin * se:
                failed = (
                    f"its held-out loss turned up from {np.mean(before):.4g} to "
                    f"{np.mean(after):.4g} between steps {start} and {horizon}"
                )
        mean = float(np.mean(after)) if after else math.nan
        probes.append({"lr": lr, "steps": float(horizon), "loss": mean,
                       "confirm": 0.0 if failed else 1.0})  # fmt: skip
        if failed is None:
            return lr, rejected
        below = [c for c in candidates if c < lr]
        rejected.append(f"{lr:.3g} rejected over {horizon} steps: {failed}")
        lr = max(below)
    return lr, rejected


def _spiked(losses: list[float]) -> str | None:
    """Why the confirmation's training losses show a blow-up, or ``None``."""
    rule = DivergenceRule()
    for loss in losses:
        why = rule.update(loss)
        if why is not None:
            return f"its training loss spiked ({why.removeprefix('loss ')})"
    return None
