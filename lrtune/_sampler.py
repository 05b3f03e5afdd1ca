"""Optuna's grouped multivariate TPE, without the work a conditional space throws away.

lrtune's space is conditional: ``adam.lr`` exists only in trials whose ``optimizer`` is
``adam``, ``schedule.step.gamma`` only where ``schedule`` is ``step``. Optuna's grouped TPE
splits such a space into groups of parameters that occur together and, for every trial,
samples *every* group, although the trial will use one optimizer's group and drop the
others. Each group's sample splits all finished trials and fits two Parzen estimators, so
at 1,000 trials over 7 optimizers that is most of the sampler's time. It also rebuilds the
group decomposition from every finished trial on every trial.

:class:`GatedTPESampler` is ``optuna.samplers.TPESampler`` with two changes, neither of
which changes what a used parameter is drawn from (groups are sampled independently of
each other in Optuna's TPE either way; only the random stream differs):

- it samples the groups that do not depend on a choice first, then only the groups gated by
  the choices just made (lrtune's names say which: ``<choice>.<param>`` or
  ``<categorical>.<choice>.<param>``);
- it adds each finished trial to the group decomposition once (adding a trial again, as
  Optuna does, leaves the decomposition as it was).
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial

from lrtune._compat._core import TPEInternals, store_relative_params

__all__ = ["GatedTPESampler"]


def _gate(name: str, choices: dict[str, set[str]]) -> tuple[str, str] | None:
    """The (categorical, value) a parameter exists under, by lrtune's naming: ``adam.lr`` ->
    ``("optimizer", "adam")``, ``schedule.step.gamma`` -> ``("schedule", "step")``."""
    head, _, rest = name.partition(".")
    if not rest:
        return None
    for key, values in choices.items():
        if head in values:
            return key, head
        if head == key and rest.partition(".")[0] in values and "." in rest:
            return key, rest.partition(".")[0]
    return None


class GatedTPESampler(TPEInternals):
    """``TPESampler(multivariate=True, group=True)`` that samples only the parameter groups
    a trial can use (see the module docstring). Takes ``TPESampler``'s arguments; with
    ``group=False`` it behaves exactly like ``TPESampler``. With ``constant_liar`` (Optuna's
    default) the sampled parameters are shared with other workers as ``TPESampler`` does."""

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        groups = self.group_spaces
        if groups is None:
            return super().sample_relative(study, trial, search_space)
        spaces = []
        for group in groups:
            space = {
                name: dist
                for name, dist in sorted(group.items())
                if not dist.single() and name in search_space
            }
            if space:
                spaces.append(space)
        choices = {
            name: {str(choice) for choice in dist.choices}
            for space in spaces
            for name, dist in space.items()
            if isinstance(dist, CategoricalDistribution)
        }
        params: dict[str, Any] = {}
        gated: list[tuple[tuple[str, str], dict[str, BaseDistribution]]] = []
        for space in spaces:
            gates = {_gate(name, choices) for name in space}
            gate = gates.pop() if len(gates) == 1 else None
            if gate is None:
                params.update(self.sample_group(study, trial, space))
            else:
                gated.append((gate, space))
        for (key, value), space in gated:
            if key in params and str(params[key]) == value:
                params.update(self.sample_group(study, trial, space))
        if params and self.constant_liar:
            # as TPESampler.sample_relative: other workers read a running trial's
            # parameters from here to count it as a "lie"
            store_relative_params(study, trial, params)
        return params
