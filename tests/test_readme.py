"""The README's commands work as written (issue 19): every ``pgc`` command of its ```bash blocks runs from a
checkout's root (here: a scratch directory holding the checkout's ``examples``, so that ``-o mlp.ptx`` lands
there), exits 0, prints no traceback and no error, and writes output. A command that calls ``ptxas`` is skipped
where the CUDA toolkit is not installed (``tests/filecheck`` assembles the same PTX through nvJitLink)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_commands(prefix: str = "pgc ") -> list[str]:
    """The lines of the README's ```bash blocks that start with ``prefix``, without their trailing comments."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            if line.startswith(prefix):
                commands.append(re.sub(r"\s+#[^'\"]*$", "", line).strip())
    return commands


def test_the_readme_shows_pgc_commands() -> None:
    commands = readme_commands()
    assert len(commands) >= 3
    assert any("| pgc-opt" in c and "--print-debuginfo" in c for c in commands)
    assert any("--device cuda" in c and "ptxas" in c for c in commands)


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs_as_written(command: str, tmp_path: Path) -> None:
    if re.search(r"(^|[|&;]\s*)ptxas\b", command) and shutil.which("ptxas") is None:
        pytest.skip("ptxas (the CUDA toolkit) is not installed")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    bin_dir = os.path.dirname(sys.executable)  # the venv's bin: pgc and pgc-opt live there
    env = dict(os.environ, PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]))
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, f"{command}\nexit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr.lower(), proc.stderr[-3000:]
    written = [p for p in tmp_path.iterdir() if p.name != "examples"]
    assert proc.stdout.strip() or any(p.stat().st_size for p in written), f"{command}: no output"
    if "--print-debuginfo" in command:  # the README's pipe shows the model's lines, not loc(unknown)
        assert re.search(r'= pg\.tanh .* loc\(".*examples/mlp_names\.py":\d+:\d+\)', proc.stdout)
        assert not re.search(r"= pg\..*loc\(unknown\)", proc.stdout)
