"""The docs hold: the README's set-up commands come first and the README stays short, every
Python block of the README and of docs/*.md runs as written, every YAML block validates, the
study file reference names every field, every relative link points to an existing file (and
heading), and every script in examples/ runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
FENCE = re.compile(r"^```.*?^```[ \t]*$", flags=re.S | re.M)


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), flags=re.S | re.M)


PYTHON_PAGES = [page for page in PAGES if _blocks(page, "python")]


def test_readme_has_two_setup_commands_first() -> None:
    """The README's first lines give the two commands that set up a fresh machine: one runs
    the main job, one the tests; CI (.ci/run) greps the second."""
    text = README.read_text()
    block = re.search(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)
    assert block is not None
    assert text[: block.start()].count("\n") < 15, "the set-up commands must come first"
    commands = [line for line in block.group(1).splitlines() if not line.startswith("#")]
    assert len(commands) == 2
    assert all(
        c.startswith("python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 && ")
        for c in commands
    )
    assert commands[0].endswith(".venv/bin/lrtune search studies/quickstart.yaml")
    assert commands[1].endswith(".venv/bin/pytest -q")
    ci_grep = re.search(r"^python3 -m venv \.venv .*pytest.*$", text, flags=re.M)
    assert ci_grep is not None and ci_grep.group(0) == commands[1]


def test_readme_is_short() -> None:
    lines = README.read_text().count("\n")
    assert lines <= 220, f"README.md has {lines} lines; move detail to docs/"


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=[_name(p) for p in PYTHON_PAGES])
def test_python_examples(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page's Python blocks, run in order in one namespace, as in a notebook."""
    monkeypatch.chdir(ROOT)  # examples name files such as studies/quickstart.yaml
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for index, code in enumerate(_blocks(page, "python")):
        exec(compile(code, f"{_name(page)} python block {index}", "exec"), namespace)
    if page == README:  # the README's examples print their answers; check them here
        result, model, callback = namespace["result"], namespace["model"], namespace["range_test"]
        assert result.suggestion is not None and 1e-5 < result.suggestion < 1.0  # type: ignore[attr-defined]
        assert model.hparams.lr == result.suggestion  # type: ignore[attr-defined]
        assert callback.result.suggestion is not None  # type: ignore[attr-defined]


def test_the_examples_are_found() -> None:
    """The README shows find_lr and the callback; the guides hold the rest."""
    counts = {_name(page): len(_blocks(page, "python")) for page in PYTHON_PAGES}
    assert counts.get("README.md", 0) >= 2
    assert counts.get("docs/range-test.md", 0) >= 5
    assert counts.get("docs/user-guide.md", 0) >= 3


def _yaml_blocks() -> list[tuple[Path, str]]:
    return [(page, block) for page in PAGES for block in _blocks(page, "yaml")]


YAML_BLOCKS = _yaml_blocks()


@pytest.mark.parametrize(
    ("page", "block"), YAML_BLOCKS, ids=[f"{_name(p)}-{i}" for i, (p, _) in enumerate(YAML_BLOCKS)]
)
def test_yaml_blocks_validate(page: Path, block: str) -> None:
    """Every YAML block is a study file (it has a space) or a training config, as written."""
    import yaml

    from lrtune.config import StudyConfig, TrainConfig

    data = yaml.safe_load(block)
    kind = StudyConfig if "space" in data else TrainConfig
    kind.model_validate(data)


def test_study_file_reference_example_is_valid() -> None:
    """The annotated study file validates as written (every field it names)."""
    import yaml

    from lrtune.config import StudyConfig

    blocks = _blocks(ROOT / "docs" / "study-file.md", "yaml")
    study = next(b for b in blocks if b.startswith("name: quickstart"))
    config = StudyConfig.model_validate(yaml.safe_load(study))
    assert config.test == "end" and config.channels_last and not config.compile
    assert config.space.lr.auto and len(config.space.optimizers) == 7


def test_study_file_reference_names_every_field() -> None:
    """docs/study-file.md has a row for every field of a study file."""
    from lrtune.config import (
        Budget,
        ComponentConfig,
        LRSpace,
        Objective,
        PrunerConfig,
        SamplerConfig,
        SpaceConfig,
        StudyConfig,
    )

    text = (ROOT / "docs" / "study-file.md").read_text()
    first_cells = re.findall(r"^\| ([^|]+) \|", text, flags=re.M)
    rows = {name for cell in first_cells for name in re.findall(r"`([\w.]+)`", cell)}
    missing = [f for f in StudyConfig.model_fields if f not in rows]
    missing += [f"space.{f}" for f in SpaceConfig.model_fields if f"space.{f}" not in rows]
    missing += [f"space.lr.{f}" for f in LRSpace.model_fields if f not in rows]
    for part in (Budget, Objective, SamplerConfig, PrunerConfig, ComponentConfig):
        missing += [f for f in part.model_fields if not re.search(rf"\b{f}\b", text)]
    assert not missing, f"docs/study-file.md does not describe: {missing}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", page.read_text()), flags=re.M):
        slug = _slug(heading)
        n = 0
        while (candidate := slug if n == 0 else f"{slug}-{n}") in anchors:
            n += 1
        anchors.add(candidate)
    return anchors


def _links(page: Path) -> list[str]:
    text = re.sub(r"`[^`\n]*`", "", FENCE.sub("", page.read_text()))
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_relative_links_resolve() -> None:
    """Every relative link in README.md and docs/*.md names an existing file, and an anchor
    into a Markdown page names one of its headings."""
    broken = []
    for page in PAGES:
        for link in _links(page):
            if re.match(r"[a-z]+:", link):  # https:, mailto:
                continue
            path, _, anchor = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            if not target.exists():
                broken.append(f"{_name(page)}: {link} (no such file)")
            elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
                broken.append(f"{_name(page)}: {link} (no such heading)")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), "an example should print its result"
