"""Figures, the study report (one offline HTML file) and the dashboard's study note.

plotly is imported when a figure is made, so ``import lrtune`` (and ``import lrtune.report``)
stays light. The study report uses Optuna's own plots where they fit (optimization history,
importances, parallel coordinates, timeline) and adds what they lack for an LR study: the
metric per optimizer, LR vs metric with the range-test bracket, learning curves with pruned
and diverged trials marked, and the range-test curves. ``lrtune find-lr --out``,
:meth:`RangeTestResult.plot` (through :func:`plot_lr_range`) and the report all draw range
tests with :func:`lr_curves_figure`.

One concept per module:

* ``_view``: what the report reads from a study, and the trial accessors shared below.
* ``_figures``: the plotly figures and :func:`write_html`.
* ``_note``: :func:`study_note`, the markdown note for optuna-dashboard (no plotly).
* ``_html``: the HTML study report, :func:`study_report` and :func:`write_report`.
"""

from lrtune.report._figures import learning_curves_figure as learning_curves_figure
from lrtune.report._figures import lr_curves_figure, plot_lr_range, write_html
from lrtune.report._figures import lr_vs_metric_figure as lr_vs_metric_figure
from lrtune.report._figures import metric_by_optimizer_figure as metric_by_optimizer_figure
from lrtune.report._html import study_report, write_report
from lrtune.report._note import study_note
from lrtune.report._view import _View as _View
from lrtune.report._view import _view as _view

__all__ = [
    "lr_curves_figure",
    "plot_lr_range",
    "study_note",
    "study_report",
    "write_html",
    "write_report",
]
# Also re-exported, outside __all__ (the tests use them): the study figures
# (learning_curves_figure, lr_vs_metric_figure, metric_by_optimizer_figure) and the study
# view they draw (_view, _View), written ``name as name`` above.
