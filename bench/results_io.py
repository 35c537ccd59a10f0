"""``write_json``: how every bench script writes its ``bench/results/`` file (atomically: a reader never sees half
of it); ``gpu_rows_env``: the fields a GPU bench script's JSON lines start with."""

from __future__ import annotations

import json
import os
from typing import Any


def write_json(path: str, result: Any, indent: int = 2) -> None:
    """Write ``result`` as JSON to ``path`` through a temporary file and a rename, creating the folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=indent)
        f.write("\n")
    os.replace(path + ".tmp", path)


def gpu_rows_env(torch: Any) -> tuple[str, dict[str, Any]]:
    """The GPU's name and the fields every row of a GPU bench script's JSON lines starts with (today's date, the
    GPU, the Python/PyTorch/CUDA versions); ``torch`` is the imported module (bench scripts import it late)."""
    import datetime
    import platform

    gpu = torch.cuda.get_device_name(0)
    env = {
        "date": datetime.date.today().isoformat(),
        "gpu": gpu,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda},
    }
    return gpu, env
