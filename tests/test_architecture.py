"""The one-way house: imports between lrtune's modules flow down the layers, never in a
circle, and the core imports neither Lightning nor plotly (docs/ARCHITECTURE.md).

The graph is read from the source with ``ast``: every ``import`` and ``from ... import``
naming an lrtune module, at module level or inside a function (a lazy import is still a
dependency). Importing ``lrtune.pkg.mod`` from outside ``lrtune.pkg`` also runs
``lrtune/pkg/__init__.py``, so it counts as an import of ``lrtune.pkg`` too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lrtune"

CORE, LIGHTNING, RUNNER, EDGE, API = range(5)
LAYER_NAMES = ["core", "Lightning layer", "study runner", "edge", "API"]

# Every module under lrtune/ must be listed (a new module fails until it is given a layer).
# A package name stands for all its modules unless a module is listed on its own.
LAYERS: dict[str, int] = {
    # core: configs, registries, pure math, Optuna storages and results; no Lightning/plotly
    "lrtune.errors": CORE,
    "lrtune.datasets": CORE,
    "lrtune.config": CORE,
    "lrtune.optimizers": CORE,
    "lrtune.schedules": CORE,
    "lrtune.models": CORE,
    "lrtune.range_test": CORE,  # the math and the result; its Lightning modules below
    "lrtune.lr_range": CORE,  # old import path (an alias module)
    "lrtune.space": CORE,
    "lrtune._sampler": CORE,
    "lrtune.storage": CORE,
    "lrtune.results": CORE,
    "lrtune.artifacts": CORE,
    "lrtune.hooks": CORE,
    "lrtune._compat": CORE,  # other libraries' private names: _core here, _lightning below
    # Lightning layer: datamodules, the module, the range-test callback, training
    "lrtune._logging": LIGHTNING,
    "lrtune._threads": LIGHTNING,
    "lrtune.data": LIGHTNING,
    "lrtune.module": LIGHTNING,
    "lrtune._state": LIGHTNING,
    "lrtune.components": LIGHTNING,
    "lrtune._trainer": LIGHTNING,
    "lrtune._compat._lightning": LIGHTNING,
    "lrtune.range_test._steps": LIGHTNING,
    "lrtune._schedule_free": LIGHTNING,
    "lrtune.range_test._verify": LIGHTNING,
    "lrtune.range_test._callback": LIGHTNING,
    "lrtune.range_test._find": LIGHTNING,
    "lrtune.range_test._tuner": LIGHTNING,
    "lrtune._trial_callbacks": LIGHTNING,
    "lrtune.callbacks": LIGHTNING,  # old import paths (alias modules)
    "lrtune.finder": LIGHTNING,
    "lrtune.tuner": LIGHTNING,
    "lrtune.training": LIGHTNING,
    # study runner: trials, the loop, workers; publishes nothing itself
    "lrtune.study": RUNNER,
    # edges: figures and HTML, the dashboard server, the publishing hooks
    "lrtune.report": EDGE,
    "lrtune.dashboard": EDGE,
    "lrtune.publish": EDGE,
    # API: search() hands the edges' hooks to the runner; the CLI; the package facades
    "lrtune.study._search": API,
    "lrtune.study.__init__": API,
    "lrtune.cli": API,
    "lrtune.__init__": API,
    "lrtune.__main__": API,
}

# Upward imports that are allowed, each inside a function and with its reason.
ALLOWED_UPWARD = {
    ("lrtune.range_test._result", "lrtune.report"): (
        "RangeTestResult.plot() draws through lrtune.report.plot_lr_range at call time"
    ),
}

# Third-party packages the core must not import, even lazily.
CORE_FORBIDDEN = ("lightning", "pytorch_lightning", "plotly", "optuna_dashboard", "typer")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts)


def _layer(module: str) -> int:
    """The layer of a module: its own entry, else its closest listed package."""
    name = module
    while name:
        if name in LAYERS:
            return LAYERS[name]
        name = name.rpartition(".")[0]
    raise AssertionError(f"{module} has no layer: add it to LAYERS in {Path(__file__).name}")


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _in_type_checking(source: str) -> set[int]:
    tree = ast.parse(source)
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in ast.walk(node):
                if hasattr(child, "lineno"):
                    lines.add(child.lineno)
    return lines


def import_graph(
    package: Path = PACKAGE,
) -> tuple[dict[str, set[str]], dict[str, set[str]], dict[tuple[str, str], bool]]:
    """(lrtune imports per module, third-party imports per module, (a, b) -> at module level).

    Package ``__init__`` modules are named ``lrtune.pkg.__init__`` (``lrtune.__init__``);
    an import of ``lrtune.pkg`` means its ``__init__``.
    """
    files = sorted(package.rglob("*.py"))
    modules = {_module_name(f): f for f in files}
    packages = {m.rpartition(".")[0] for m in modules if m.endswith(".__init__")}
    known = {m.removesuffix(".__init__") for m in modules} | packages

    def canonical(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]  # `import lrtune.study._runner as r`: a module
        if not name:
            return None
        return f"{name}.__init__" if name in packages else name

    graph: dict[str, set[str]] = {m: set() for m in modules}
    third: dict[str, set[str]] = {m: set() for m in modules}
    eager: dict[tuple[str, str], bool] = {}
    for module, path in modules.items():
        source = path.read_text()
        skip = _in_type_checking(source)
        is_package = module.endswith(".__init__")
        importer = module.removesuffix(".__init__")
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno in skip:
                continue
            at_top = node in tree.body
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                base = _resolve(importer, is_package, node)
                names = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
                ]
            for name in names:
                if name.split(".")[0] != "lrtune":
                    third[module].add(name.split(".")[0])
                    continue
                target = canonical(name)
                if target is None or target == module:
                    continue
                targets = {target}
                # importing lrtune.pkg.mod from outside lrtune.pkg runs lrtune/pkg/__init__.py
                parent = target.removesuffix(".__init__").rpartition(".")[0]
                while parent in packages and not importer.startswith(parent + "."):
                    if parent != "lrtune":
                        targets.add(f"{parent}.__init__")
                    parent = parent.rpartition(".")[0]
                for t in targets - {module}:
                    graph[module].add(t)
                    eager[(module, t)] = eager.get((module, t), False) or at_top
    return graph, third, eager


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _graph_without_package_inits(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's own submodules importing each other through its ``__init__`` is how
    packages work (the ``__init__`` re-exports them): drop edges from a submodule to its
    own package's ``__init__`` and from an ``__init__`` to its own submodules."""
    out: dict[str, set[str]] = {}
    for module, targets in graph.items():
        kept = set()
        for target in targets:
            if target.endswith(".__init__"):
                pkg = target.removesuffix(".__init__")
                if module.startswith(pkg + "."):
                    continue
            kept.add(target)
        out[module] = kept
    return out


def layer_violations(graph: dict[str, set[str]], eager: dict[tuple[str, str], bool]) -> list[str]:
    problems = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if target.endswith(".__init__") and module.startswith(
                target.removesuffix(".__init__") + "."
            ):
                continue  # a submodule and its own package's __init__
            low, high = _layer(module), _layer(target)
            if high <= low:
                continue
            key = (module, target.removesuffix(".__init__"))
            if key in ALLOWED_UPWARD and not eager[(module, target)]:
                continue
            problems.append(f"{module} ({LAYER_NAMES[low]}) imports {target} ({LAYER_NAMES[high]})")
    return problems


# ----------------------------------------------------------------------------- the tests


def test_every_module_has_a_layer() -> None:
    graph, _, _ = import_graph()
    for module in graph:
        _layer(module)


def test_imports_form_no_cycle() -> None:
    """No cycle but the allowed lazy upward imports (``result.plot()`` closes
    range_test._result -> report -> range_test._result at call time, by design)."""
    graph, _, eager = import_graph()
    for (module, target), _reason in ALLOWED_UPWARD.items():
        for name in (target, f"{target}.__init__"):
            if name in graph.get(module, ()) and not eager[(module, name)]:
                graph[module].discard(name)
    cycle = find_cycle(_graph_without_package_inits(graph))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_flow_down_the_layers() -> None:
    graph, _, eager = import_graph()
    assert layer_violations(graph, eager) == []


def test_nothing_imports_the_cli() -> None:
    graph, _, _ = import_graph()
    importers = sorted(
        m for m, targets in graph.items() for t in targets
        if t.startswith("lrtune.cli") and not m.startswith(("lrtune.cli", "lrtune.__main__"))
    )  # fmt: skip
    assert importers == []


def test_the_core_imports_neither_lightning_nor_plotly() -> None:
    _, third, _ = import_graph()
    bad = {
        module: sorted(set(names) & set(CORE_FORBIDDEN))
        for module, names in third.items()
        if _layer(module) == CORE and set(names) & set(CORE_FORBIDDEN)
    }
    assert bad == {}


def test_importing_the_core_loads_no_lightning_or_plotly() -> None:
    """The same at run time: importing every core module pulls in neither."""
    core = sorted(m.removesuffix(".__init__") for m in import_graph()[0] if _layer(m) == CORE)
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in core)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        + repr(CORE_FORBIDDEN)
        + ")\nprint(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert out == "[]"


def test_the_runner_publishes_only_through_hooks() -> None:
    """No module of the study runner imports the report, the dashboard or the publisher."""
    graph, _, _ = import_graph()
    runner = [m for m in graph if _layer(m) == RUNNER]
    assert runner, "no study-runner modules found"
    reached = {(m, t) for m in runner for t in graph[m] if _layer(t) >= EDGE}
    assert reached == set()


def test_no_module_is_too_long() -> None:
    long = {
        _module_name(f): n
        for f in PACKAGE.rglob("*.py")
        if (n := len(f.read_text().splitlines())) > 620
    }
    assert long == {}


def test_every_module_says_what_it_owns() -> None:
    missing = [
        _module_name(f) for f in sorted(PACKAGE.rglob("*.py"))
        if f.read_text().strip() and ast.get_docstring(ast.parse(f.read_text())) is None
    ]  # fmt: skip
    assert missing == []


# ------------------------------------------------------------- the checks can fail


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "lrtune" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "lrtune"


def test_a_deliberate_cycle_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    package = _tree(
        tmp_path,
        {
            "__init__.py": '"""x"""\n',
            "config.py": '"""x"""\nfrom lrtune import space\n',
            "space.py": '"""x"""\n\n\ndef f():\n    from lrtune.config import X\n',
        },
    )
    graph, _, _ = import_graph(package)
    assert find_cycle(graph) == ["lrtune.config", "lrtune.space", "lrtune.config"]


def test_a_cycle_through_a_package_init_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """report -> study._results runs study/__init__, which imports _search -> report."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    package = _tree(
        tmp_path,
        {
            "__init__.py": '"""x"""\n',
            "report.py": '"""x"""\nfrom lrtune.study._results import best\n',
            "study/__init__.py": '"""x"""\nfrom lrtune.study._search import search\n',
            "study/_results.py": '"""x"""\n',
            "study/_search.py": '"""x"""\nfrom lrtune.report import write\n',
        },
    )
    graph, _, _ = import_graph(package)
    cycle = find_cycle(_graph_without_package_inits(graph))
    assert cycle is not None and "lrtune.report" in cycle and "lrtune.study.__init__" in cycle


def test_an_upward_import_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    package = _tree(
        tmp_path,
        {
            "__init__.py": '"""x"""\n',
            "config.py": '"""x"""\n\n\ndef f():\n    from lrtune.report import g\n',
            "range_test/__init__.py": '"""x"""\n',
            "range_test/_result.py": '"""x"""\nfrom lrtune.report import plot_lr_range\n',
            "report.py": '"""x"""\n',
            "study/__init__.py": '"""x"""\n',
            "study/_runner.py": '"""x"""\nimport lrtune.dashboard\n',
            "dashboard.py": '"""x"""\n',
        },
    )
    graph, _, eager = import_graph(package)
    assert layer_violations(graph, eager) == [
        "lrtune.config (core) imports lrtune.report (edge)",
        # the allowed lazy edge is not allowed at module level
        "lrtune.range_test._result (core) imports lrtune.report (edge)",
        "lrtune.study._runner (study runner) imports lrtune.dashboard (edge)",
    ]


def test_no_class_is_defined_inside_a_function() -> None:
    """Classes live at module level, where they can be tested and pickled on their own
    (issue 25: the trial callbacks were classes inside functions)."""
    nested = [
        f"{_module_name(f)}.{node.name}.{sub.name}"
        for f in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(f.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for sub in ast.walk(node)
        if isinstance(sub, ast.ClassDef)
    ]
    assert nested == []


# ----------------------------------------------------------------------------- private names
# Names with a leading underscore that their library documents as public API.
DOCUMENTED_UNDERSCORE = {"_exit"}  # os._exit: end a worker process without cleanup


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _private(name: str) -> bool:
    return name.startswith("_") and not _dunder(name)


def own_private_names(package: Path = PACKAGE) -> set[str]:
    """Every private name lrtune defines: modules, functions, classes, module-level names,
    class attributes and attributes assigned on ``self``/``cls``."""
    names = {p.stem for p in package.rglob("_*.py")} | {
        p.name for p in package.rglob("_*") if p.is_dir()
    }
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id in ("self", "cls")
            ):
                names.add(node.attr)
    return {n for n in names if _private(n)}


def foreign_private_uses(package: Path = PACKAGE) -> list[str]:
    """Uses of another library's private names outside ``lrtune._compat``: an import from a
    private module or of a private name, ``obj._name`` or ``getattr(obj, "_name")`` where
    lrtune itself defines no ``_name`` (``self._x`` is the class's own business: a subclass
    of another library's class that needs its internals lives in ``_compat``)."""
    own = own_private_names(package)
    found = []
    for path in sorted(package.rglob("*.py")):
        module = _module_name(path)
        if module.startswith("lrtune._compat"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{module}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] in ("lrtune", "__future__"):
                    continue
                if any(_private(p) for p in node.module.split(".")):
                    found.append(f"{where} imports from {node.module}")
                found += [
                    f"{where} imports {node.module}.{a.name}"
                    for a in node.names
                    if _private(a.name)
                ]
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] != "lrtune" and any(
                        _private(p) for p in alias.name.split(".")
                    ):
                        found.append(f"{where} imports {alias.name}")
            elif (
                isinstance(node, ast.Attribute)
                and _private(node.attr)
                and node.attr not in own | DOCUMENTED_UNDERSCORE
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                found.append(f"{where} uses .{node.attr}")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr", "setattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
                and _private(node.args[1].value)
                and node.args[1].value not in own
            ):
                found.append(f"{where} uses {node.func.id}(..., {node.args[1].value!r})")
    return found


def test_no_private_name_of_another_library_outside_compat() -> None:
    assert foreign_private_uses() == []


def test_a_private_name_of_another_library_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    package = _tree(
        tmp_path,
        {
            "__init__.py": '"""x"""\n',
            "_own.py": '"""x"""\n\n\nclass A:\n    def f(self):\n        self._mine = 1\n',
            "a.py": (
                '"""x"""\nimport optuna.samplers._tpe\n'
                "from lightning.pytorch.core.optimizer import _MockOptimizer\n"
                "from optuna.storages.journal._storage import JournalOperation\n"
                "from lrtune._own import A\n\n\n"
                "def f(study, trial, a):\n"
                "    a._mine = study._storage\n"
                '    return getattr(trial, "_trial_id"), hasattr(a, "_mine"), self._x\n'
            ),
            "_compat/__init__.py": '"""x"""\n',
            "_compat/b.py": '"""x"""\n\n\ndef g(study):\n    return study._storage\n',
        },
    )
    assert foreign_private_uses(package) == [
        "lrtune.a:2 imports optuna.samplers._tpe",
        "lrtune.a:3 imports lightning.pytorch.core.optimizer._MockOptimizer",
        "lrtune.a:4 imports from optuna.storages.journal._storage",
        "lrtune.a:9 uses ._storage",
        "lrtune.a:10 uses getattr(..., '_trial_id')",
    ]
