"""The README's Python examples and every script in examples/ run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_has_two_setup_commands_first() -> None:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, flags=re.S)
    assert block is not None and text.index(block.group(0)) < 20
    commands = [line for line in block.group(1).splitlines() if not line.startswith("#")]
    assert len(commands) == 2
    assert all(
        c.startswith("python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 && ")
        for c in commands
    )
    assert "lrtune " in commands[0] and "pytest" in commands[1]


def test_readme_python_examples() -> None:
    """The README's Python blocks, run in order in one namespace, as in a notebook."""
    namespace: dict[str, object] = {"__name__": "__readme__"}
    blocks = _readme_python_blocks()
    assert len(blocks) >= 4
    for index, code in enumerate(blocks):
        exec(compile(code, f"README.md python block {index}", "exec"), namespace)


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), "an example should print its result"


def test_readme_study_file_is_valid() -> None:
    """The study file shown in the README validates as written (every field it names)."""
    import yaml

    from lrtune.config import StudyConfig

    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    study = next(b for b in blocks if b.startswith("name: quickstart"))
    config = StudyConfig.model_validate(yaml.safe_load(study))
    assert config.test == "end" and config.channels_last and not config.compile
    assert config.space.lr.auto and len(config.space.optimizers) == 7
