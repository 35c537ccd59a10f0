"""Runs the lit + FileCheck suite under ``tests/filecheck`` as one pytest test, so that ``pytest`` runs both suites.

lit runs its tests in parallel and prints only the failures (with their RUN lines and FileCheck's report), which
this test passes on as its failure message.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

FILECHECK_DIR = Path(__file__).parent / "filecheck"


def test_filecheck_suite() -> None:
    """Every lit test under ``tests/filecheck`` passes."""
    bin_dir = os.path.dirname(sys.executable)  # the venv's bin: pgc-opt, pgc and filecheck live there
    env = dict(os.environ, PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]))
    cmd = [sys.executable, "-c", "import lit.main; lit.main.main()", "-v", str(FILECHECK_DIR)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"lit failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}", pytrace=False)
