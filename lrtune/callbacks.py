"""``LRRangeTest``: Leslie Smith's LR range test as a Lightning callback, restored in memory.

The sweep runs its own short inner loop through the Trainer's strategy (so mixed precision,
gradient clipping and accumulation behave as in training), records one loss per optimizer
step while the LR grows, stops on divergence, then puts back every piece of state it
touched: weights, buffers, gradients, optimizer, schedulers, grad scaler, RNG streams,
torchmetrics states and the training dataloader's position. Nothing is written to disk, so
parallel trials cannot collide, and training afterwards is bit-for-bit what it would have
been without the test.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.core.optimizer import _MockOptimizer
from torchmetrics import Metric

from lrtune._state import is_stateful, loader_generator, rng_states, set_rng_states
from lrtune.errors import ConfigError
from lrtune.lr_range import (
    METHODS,
    DivergenceRule,
    LRFinderResult,
    Mode,
    lr_sweep,
    pick_probe,
    probe_candidates,
)

__all__ = ["LRRangeTest"]

log = logging.getLogger(__name__)

_LR_KEYS = ("lr", "initial_lr", "max_lr", "min_lr")


# ----------------------------------------------------------------------------- state


@dataclass
class _Snapshot:
    """Everything the sweep changes, copied in memory."""

    weights: dict[str, torch.Tensor]
    grads: list[torch.Tensor | None]
    optimizers: list[dict[str, Any]]
    schedulers: list[dict[str, Any]]
    scaler: dict[str, Any] | None
    rng: dict[str, Any]
    metrics: list[tuple[Metric, dict[str, Any], int]]
    loader: dict[str, Any] | None
    loader_generator: torch.Tensor | None
    training: bool

    @classmethod
    def take(cls, trainer: pl.Trainer, module: pl.LightningModule, loader: Any) -> _Snapshot:
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        generator = loader_generator(loader)
        return cls(
            weights={k: v.detach().clone() for k, v in module.state_dict().items()},
            grads=[
                None if p.grad is None else p.grad.detach().clone() for p in module.parameters()
            ],
            optimizers=[copy.deepcopy(o.state_dict()) for o in trainer.optimizers],
            schedulers=[
                copy.deepcopy(c.scheduler.state_dict()) for c in trainer.lr_scheduler_configs
            ],
            scaler=copy.deepcopy(scaler.state_dict()) if scaler is not None else None,
            rng=rng_states(),
            metrics=[
                (m, copy.deepcopy(m.metric_state), m._update_count)
                for m in module.modules()
                if isinstance(m, Metric)
            ],
            loader=copy.deepcopy(loader.state_dict()) if is_stateful(loader) else None,
            loader_generator=generator.get_state() if generator is not None else None,
            training=module.training,
        )

    def restore(self, trainer: pl.Trainer, module: pl.LightningModule, loader: Any) -> None:
        module.load_state_dict(self.weights)
        with torch.no_grad():
            for p, g in zip(module.parameters(), self.grads, strict=True):
                p.grad = None if g is None else g.clone()
        for optimizer, state in zip(trainer.optimizers, self.optimizers, strict=True):
            optimizer.load_state_dict(state)
        for config, state in zip(trainer.lr_scheduler_configs, self.schedulers, strict=True):
            config.scheduler.load_state_dict(state)
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None and self.scaler is not None:
            scaler.load_state_dict(self.scaler)
        set_rng_states(self.rng)
        for metric, state, count in self.metrics:
            for name, value in state.items():
                setattr(metric, name, value)
            metric._update_count = count
            metric._computed = None
        if self.loader is not None:
            loader.load_state_dict(self.loader)
        generator = loader_generator(loader)
        if generator is not None and self.loader_generator is not None:
            generator.set_state(self.loader_generator)
        module.train(self.training)


@contextmanager
def _logging_off(module: pl.LightningModule) -> Iterator[None]:
    """``self.log``/``self.log_dict`` do nothing during the sweep (its steps are not training)."""

    def discard(*args: Any, **kwargs: Any) -> None:
        return None

    module.log = discard  # type: ignore[method-assign]
    module.log_dict = discard  # type: ignore[method-assign]
    try:
        yield
    finally:
        del module.log
        del module.log_dict


def _loss_of(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        return output.get("loss")
    return None


def _is_one_cycle(trainer: pl.Trainer) -> bool:
    from lrtune.schedules import OneCycle, WarmupCosine

    for config in trainer.lr_scheduler_configs:
        scheduler = config.scheduler
        if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
            return True
        lambdas = getattr(scheduler, "lr_lambdas", ())
        if any(isinstance(fn, OneCycle | WarmupCosine) for fn in lambdas):
            return True
    return False


def _base_lrs(trainer: pl.Trainer, optimizer: torch.optim.Optimizer) -> list[float]:
    """Each group's base LR: the scheduler's base if there is one, else the group's LR."""
    return [float(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]


def apply_lr(trainer: pl.Trainer, optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Make ``lr`` the first group's base LR, scaling every group and scheduler alike.

    Every LR-like value (``lr``, ``initial_lr``, one-cycle's ``max_lr``/``min_lr``, the
    schedulers' ``base_lrs`` and last LRs) is multiplied by the same factor, so group ratios
    and schedule shapes are kept.
    """
    factor = lr / _base_lrs(trainer, optimizer)[0]
    for group in optimizer.param_groups:
        for key in _LR_KEYS:
            if key in group:
                group[key] = group[key] * factor
    for config in trainer.lr_scheduler_configs:
        scheduler = config.scheduler
        if getattr(scheduler, "optimizer", None) is not optimizer:
            continue
        if hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs = [b * factor for b in scheduler.base_lrs]
        if hasattr(scheduler, "_last_lr"):
            scheduler._last_lr = [v * factor for v in scheduler._last_lr]


# ----------------------------------------------------------------------------- callback


_STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step",
               "on_before_zero_grad")  # fmt: skip
_MODULE_STEP_HOOKS = (*_STEP_HOOKS, "backward", "optimizer_step", "optimizer_zero_grad",
                      "configure_gradient_clipping")  # fmt: skip


def _plain_steps(trainer: pl.Trainer, module: pl.LightningModule, finder: pl.Callback) -> bool:
    """Can the sweep call ``training_step``, ``backward`` and ``optimizer.step`` itself?

    Only when Lightning's step machinery would add nothing: full precision (no autocast or
    loss scaling), one device, no gradient clipping, and neither the module nor any other
    callback overrides a hook that runs around backward or the optimizer step. Then the
    result is the same, bit for bit, without ~0.3 ms of hook dispatch per step (most of a
    small model's step on a CPU); otherwise the sweep goes through ``trainer.strategy``.
    """
    from lightning.pytorch.plugins.precision import Precision
    from lightning.pytorch.strategies import SingleDeviceStrategy
    from lightning.pytorch.utilities.model_helpers import is_overridden

    if type(trainer.precision_plugin) is not Precision or trainer.gradient_clip_val:
        return False
    if type(trainer.strategy) is not SingleDeviceStrategy or trainer.strategy.model is not module:
        return False
    if any(is_overridden(hook, module, parent=pl.LightningModule) for hook in _MODULE_STEP_HOOKS):
        return False
    return not any(
        is_overridden(hook, callback, parent=pl.Callback)
        for callback in trainer.callbacks  # type: ignore[attr-defined]
        if callback is not finder
        for hook in _STEP_HOOKS
    )


def _step(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[tuple[int, Any]],
    *,
    direct: bool,
    accumulate: int,
) -> float | None:
    """One optimizer step over ``accumulate`` batches; the mean loss, or ``None`` when
    ``training_step`` skipped every batch. ``direct``: see :func:`_plain_steps`."""
    micro: list[float] = []

    def forward_backward() -> torch.Tensor | None:
        batch_idx, batch = next(batches)
        loss = _loss_of(trainer.strategy.training_step(batch, batch_idx))
        if loss is None:
            return None
        trainer.strategy.backward(loss / accumulate, optimizer)
        micro.append(float(loss.detach()))
        return loss

    optimizer.zero_grad(set_to_none=True)
    if direct:
        for _ in range(accumulate):
            batch_idx, batch = next(batches)
            loss = _loss_of(module.training_step(batch, batch_idx))
            if loss is not None:
                (loss / accumulate).backward()
                micro.append(float(loss.detach()))
        if micro:
            optimizer.step()
    else:
        for _ in range(accumulate - 1):
            forward_backward()
        trainer.strategy.optimizer_step(optimizer, forward_backward)
    return float(np.mean(micro)) if micro else None


def _held_out_loss(trainer: pl.Trainer, module: pl.LightningModule, batches: list[Any]) -> float:
    """Mean ``training_step`` loss over ``batches``, in eval mode, without gradients."""
    module.eval()
    losses = []
    with torch.no_grad(), trainer.precision_plugin.forward_context():
        for index, batch in enumerate(batches):
            loss = _loss_of(module.training_step(batch, index))
            if loss is not None:
                losses.append(float(loss))
    module.train()
    value = float(np.mean(losses)) if losses else math.nan
    return value if math.isfinite(value) else math.nan


class LRRangeTest(pl.Callback):
    """Leslie Smith's LR range test, run inside ``Trainer.fit`` and undone afterwards.

    At the chosen moment (fit start by default) the callback sweeps the LR from ``min_lr``
    to ``max_lr`` over ``num_steps`` optimizer steps of the training data, records the
    loss of each step, stops early when the loss diverges, restores every state it touched
    in memory, and stores the outcome in :attr:`result`. With ``apply=True`` the suggested
    LR becomes the optimizer's (and its schedulers') base LR before training goes on.

    Args:
        min_lr: First LR of the sweep (default 1e-7).
        max_lr: Last LR of the sweep (default 10).
        num_steps: Optimizer steps in the sweep (default 100, at least 10). The sweep
            cycles through the training data as often as needed: the Trainer's
            ``max_epochs``/``limit_train_batches`` do not cut it short.
        mode: ``exponential`` (default) or ``linear`` spacing of the LRs.
        smoothing: EMA factor used to smooth the losses (default 0.9).
        divergence_threshold: Stop when the smoothed loss rises above its best by more than
            this many times how far it had fallen (default 3). Shifting or scaling the loss
            does not change when this fires.
        method: Suggestion method: ``bracket`` (default, chosen by benchmark; see
            docs/BENCHMARKS.md), ``steepest``, ``valley`` or ``minimum`` (÷10).
        target: ``constant`` (a working LR), ``max`` (the peak LR of a one-cycle or warm-up
            schedule) or ``auto`` (default: ``max`` when the module uses such a schedule).
        epoch: Run at the start of this epoch instead of at fit start.
        step: Run before this global step instead (mid-epoch is fine).
        apply: Apply the suggestion to the optimizer and schedulers (default ``False``).
        stop_after: Stop ``fit`` after the test (what :func:`~lrtune.find_lr` uses).
        label: Name for the result (plots, tables).
        verify: After the sweep, train short constant-LR probes at a few candidate LRs
            around and above the sweep's suggestion (see
            :func:`~lrtune.lr_range.probe_candidates`), each from the same weights, optimizer
            state and batches, score each on held-out batches (the validation split when
            the datamodule has one, else training batches the probes did not use), keep
            the better half and probe those longer (successive halving); the winner
            becomes the suggestion (default ``False``). Only for ``target="constant"``: a
            one-cycle's peak LR is not a constant LR, and probing it would need the
            schedule's whole horizon.
        probe_steps: Optimizer steps of the last rung's probes (default: half of
            ``num_steps``, at least 8); the first rung runs half as many.
        probe_count: Candidate LRs (default 5, a third of a decade apart).
        probe_batches: Held-out batches each probe is scored on (default 8).
        probe_reach: Candidates go up to this factor times the stability edge, the LR of
            the sweep's lowest smoothed loss (default 1).

    Example::

        finder = LRRangeTest(apply=True)
        trainer = Trainer(max_epochs=5, callbacks=[finder])
        trainer.fit(model, datamodule=dm)
        print(finder.result.suggestion)
    """

    def __init__(
        self,
        min_lr: float = 1e-7,
        max_lr: float = 10.0,
        num_steps: int = 100,
        *,
        mode: Mode = "exponential",
        smoothing: float = 0.9,
        divergence_threshold: float = 3.0,
        method: str = "bracket",
        target: Literal["auto", "constant", "max"] = "auto",
        epoch: int | None = None,
        step: int | None = None,
        apply: bool = False,
        stop_after: bool = False,
        label: str = "",
        verify: bool = False,
        probe_steps: int | None = None,
        probe_count: int = 5,
        probe_batches: int = 8,
        probe_reach: float = 1.0,
    ) -> None:
        self._lrs = lr_sweep(min_lr, max_lr, num_steps, mode)
        if not 0.0 <= smoothing < 1.0:
            raise ConfigError(f"smoothing must be in [0, 1), got {smoothing!r}")
        if divergence_threshold <= 0:
            raise ConfigError(f"divergence_threshold must be > 0, got {divergence_threshold!r}")
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
        if target not in ("auto", "constant", "max"):
            raise ConfigError(f"target must be 'auto', 'constant' or 'max', got {target!r}")
        if epoch is not None and step is not None:
            raise ConfigError("give epoch or step, not both")
        if (epoch is not None and epoch < 0) or (step is not None and step < 0):
            raise ConfigError(f"epoch/step must be >= 0, got {epoch if step is None else step}")
        self._smoothing = smoothing
        self._threshold = divergence_threshold
        self._method = method
        self._target = target
        self._epoch = epoch
        self._step = step
        self._apply = apply
        self._stop_after = stop_after
        self._label = label
        if probe_count < 2 or probe_batches < 1 or (probe_steps is not None and probe_steps < 2):
            raise ConfigError(
                "probe_count must be >= 2, probe_batches >= 1 and probe_steps >= 2; got "
                f"{probe_count}, {probe_batches}, {probe_steps}"
            )
        self._verify = verify
        self._probe_steps = probe_steps or max(8, len(self._lrs) // 2)
        self._probe_count = probe_count
        self._probe_batches = probe_batches
        self._probe_reach = probe_reach
        self.result: LRFinderResult | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(epoch=self._epoch, step=self._step, label=self._label)

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._epoch is None and self._step is None:
            self._run(trainer, pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._epoch is not None and trainer.current_epoch == self._epoch:
            self._run(trainer, pl_module)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._step is not None and trainer.global_step == self._step:
            self._run(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"result": self.result.to_dict() if self.result is not None else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        data = state_dict.get("result")
        self.result = LRFinderResult.from_dict(data) if data else None

    # ------------------------------------------------------------------ the test
    def _run(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.result is not None or trainer.sanity_checking:
            return  # once per fit (and not again after a resume)
        if not pl_module.automatic_optimization:
            raise ConfigError("LRRangeTest needs automatic optimization")
        if not trainer.optimizers or isinstance(trainer.optimizers[0], _MockOptimizer):
            raise ConfigError("LRRangeTest needs an optimizer: configure_optimizers returned none")
        if len(trainer.optimizers) != 1:
            raise ConfigError(
                "LRRangeTest needs exactly one optimizer from configure_optimizers, "
                f"got {len(trainer.optimizers)}"
            )
        optimizer = trainer.optimizers[0]
        loader = trainer.train_dataloader
        target = self._target
        if target == "auto":
            target = "max" if _is_one_cycle(trainer) else "constant"
        start = time.perf_counter()
        snapshot = _Snapshot.take(trainer, pl_module, loader)
        try:
            with _logging_off(pl_module):
                lrs, losses, stop_reason = self._sweep(trainer, pl_module, optimizer, loader)
                result = LRFinderResult.from_sweep(
                    lrs,
                    losses,
                    beta=self._smoothing,
                    method=self._method,
                    target=target,  # type: ignore[arg-type]
                    stop_reason=stop_reason,
                    num_steps=len(self._lrs),
                    seconds=0.0,
                    label=self._label,
                )
                if self._verify and target == "constant" and result.suggestion is not None:
                    result = self._verified(trainer, pl_module, optimizer, loader, snapshot, result)
        finally:
            snapshot.restore(trainer, pl_module, loader)
        result.seconds = time.perf_counter() - start
        self.result = result
        log.info(
            "LR range test: %d steps, %s; suggestion %s",
            len(lrs), stop_reason or "no divergence", self.result.suggestion,
        )  # fmt: skip
        if self._apply and self.result.suggestion is not None:
            apply_lr(trainer, optimizer, self.result.suggestion)
        if self._stop_after:
            trainer.should_stop = True

    def _sweep(
        self,
        trainer: pl.Trainer,
        module: pl.LightningModule,
        optimizer: torch.optim.Optimizer,
        loader: Any,
    ) -> tuple[list[float], list[float], str | None]:
        """Run the sweep; return the LRs and losses recorded and why it stopped early."""
        if loader is None:
            raise ConfigError("LRRangeTest needs training data (train_dataloaders or datamodule)")
        base = _base_lrs(trainer, optimizer)
        ratios = [b / base[0] if base[0] > 0 else 1.0 for b in base]
        accumulate = max(1, int(trainer.accumulate_grad_batches))
        batches = self._cycle(trainer, loader)
        direct = _plain_steps(trainer, module, self)
        rule = DivergenceRule(beta=self._smoothing, threshold=self._threshold)
        module.train()
        lrs: list[float] = []
        losses: list[float] = []
        for lr in self._lrs:
            for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
                group["lr"] = float(lr) * ratio
            loss = _step(trainer, module, optimizer, batches, direct=direct, accumulate=accumulate)
            if loss is None:
                continue  # training_step skipped every batch of this window
            lrs.append(float(lr))
            losses.append(loss)
            reason = rule.update(losses[-1])
            if reason is not None:
                return lrs, losses, reason
        return lrs, losses, None

    # ------------------------------------------------------------------ verification
    def _verified(
        self,
        trainer: pl.Trainer,
        module: pl.LightningModule,
        optimizer: torch.optim.Optimizer,
        loader: Any,
        snapshot: _Snapshot,
        result: LRFinderResult,
    ) -> LRFinderResult:
        """Probe candidate constant LRs with successive halving; the winner is the
        suggestion. Every probe starts from ``snapshot`` (weights, optimizer state, RNG)
        and trains on the same batches; the caller restores everything afterwards."""
        assert result.suggestion is not None
        candidates = probe_candidates(
            result.lrs, result.smoothed, result.suggestion, count=self._probe_count,
            reach=self._probe_reach,
        )  # fmt: skip
        snapshot.restore(trainer, module, loader)  # the probes see the sweep's batches
        base = _base_lrs(trainer, optimizer)
        ratios = [b / base[0] if base[0] > 0 else 1.0 for b in base]
        accumulate = max(1, int(trainer.accumulate_grad_batches))
        stream = self._cycle(trainer, loader)
        train = [next(stream) for _ in range(self._probe_steps * accumulate)]
        held = self._held_out(trainer, stream)
        direct = _plain_steps(trainer, module, self)
        rungs = [max(1, self._probe_steps // 2), self._probe_steps]
        alive, done = list(candidates), dict.fromkeys(candidates, 0)
        saved: dict[float, tuple[dict[str, torch.Tensor], dict[str, Any]]] = {}
        probes: list[dict[str, float]] = []
        scores: dict[float, float] = {}
        for rung, steps in enumerate(rungs):
            scores = {}
            for lr in alive:
                if lr in saved:  # the better half goes on from where its probe stopped
                    weights, state = saved.pop(lr)
                    module.load_state_dict(weights)
                    optimizer.load_state_dict(state)
                else:
                    snapshot.restore(trainer, module, loader)
                for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
                    group["lr"] = lr * ratio
                module.train()
                batches = iter(train[done[lr] * accumulate : steps * accumulate])
                loss: float | None = 0.0
                for _ in range(steps - done[lr]):
                    loss = _step(trainer, module, optimizer, batches, direct=direct,
                                 accumulate=accumulate)  # fmt: skip
                    if loss is not None and not math.isfinite(loss):
                        break
                done[lr] = steps
                ok = loss is None or math.isfinite(loss)
                scores[lr] = _held_out_loss(trainer, module, held) if ok else math.nan
                probes.append({"lr": lr, "steps": float(steps), "loss": scores[lr]})
                if rung < len(rungs) - 1:
                    saved[lr] = (
                        {k: v.detach().clone() for k, v in module.state_dict().items()},
                        copy.deepcopy(optimizer.state_dict()),
                    )
            ranked = sorted((s, lr) for lr, s in scores.items() if math.isfinite(s))
            alive = [lr for _, lr in ranked[: max(2, math.ceil(len(alive) / 2))]]
            saved = {lr: saved[lr] for lr in alive if lr in saved}  # the others are done
            if len(alive) < 2:
                break
        winner = pick_probe(scores)
        if winner is None:
            kept = f"{result.reason}; verification: every probe diverged, the sweep's LR kept"
            return replace(result, probes=probes, reason=kept)
        log.info("LR range test: verified %s over %d probes (sweep said %s)",
                 winner, len(probes), result.suggestion)  # fmt: skip
        return replace(
            result, suggestion=winner, probes=probes,
            reason=f"{result.method} method, verified by {len(candidates)} constant-LR probes "
            f"({rungs[-1]} steps, held-out loss)",
        )  # fmt: skip

    def _held_out(self, trainer: pl.Trainer, stream: Iterator[tuple[int, Any]]) -> list[Any]:
        """Batches to score probes on: the validation split's first ``probe_batches`` when
        the datamodule has one, else the next training batches (no probe trains on them)."""
        from lrtune.components import overrides

        batches: list[Any] = []
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None and overrides(datamodule, "val_dataloader"):
            try:
                val = datamodule.val_dataloader()
            except Exception:  # a datamodule that cannot make one now: use training data
                val = None
            for batch in val or ():
                batch = trainer.precision_plugin.convert_input(batch)
                batches.append(trainer.strategy.batch_to_device(batch))
                if len(batches) == self._probe_batches:
                    break
        if not batches:
            batches = [next(stream)[1] for _ in range(self._probe_batches)]
        return batches

    @staticmethod
    def _cycle(trainer: pl.Trainer, loader: Any) -> Iterator[tuple[int, Any]]:
        """Batches on the device, cycling through the loader as often as needed."""
        index = 0
        while True:
            empty = True
            for batch in loader:
                empty = False
                batch = trainer.precision_plugin.convert_input(batch)
                batch = trainer.strategy.batch_to_device(batch)
                yield index, batch
                index += 1
            if empty:
                raise ConfigError("LRRangeTest: the training dataloader produced no batches")
