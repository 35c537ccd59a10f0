"""``write_json``: how every bench script writes its ``bench/results/`` file (atomically: a reader never sees half
of it); ``gpu_rows_env``: the fields a GPU bench script's JSON lines start with; ``compiled_only_header``: those of
a result made without a GPU (ptxas and cuobjdump only)."""

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


def gpu_results_path(name: str, gpu: str) -> str:
    """``bench/results/<name>_<tag>.jsonl``, the tag the last word of the GPU's name in lower case (a GPU bench
    script's default output)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "results", f"{name}_{gpu.split()[-1].lower()}.jsonl")


def compiled_only_header(machine: str, model: str) -> dict[str, Any]:
    """The fields a result made on the CPU alone starts with: the time, ``machine`` (what was used), the commit, the
    xDSL and numpy versions, and ``model`` (what was compiled)."""
    import datetime
    import platform

    import numpy as np
    import xdsl

    here = os.path.dirname(os.path.abspath(__file__))
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {machine}",
        "commit": os.popen(f"git -C {here} rev-parse --short HEAD").read().strip(),
        "versions": {"xdsl": str(xdsl.__version__), "numpy": np.__version__},
        "model": model,
    }


def host_fields(torch: Any) -> dict[str, Any]:
    """The fields a twin's result gives of the host it ran on: today's date, the CPU, its cores and load (the machine
    is shared: other work inflates both timings), PyTorch's and OpenBLAS's threads, the versions."""
    import datetime
    import platform

    import numpy as np
    import xdsl

    return {
        "date": datetime.date.today().isoformat(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_average_1_5_15_min": os.getloadavg(),
        "torch_threads": torch.get_num_threads(),
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "xdsl": str(xdsl.__version__),
        },
    }


def twin_timings(
    pg_losses: list[float], torch_losses: list[float], pg_ms: list[float], torch_ms: list[float], warm: int
) -> dict[str, Any]:
    """What a twin that runs picograd's step and PyTorch's interleaved reports of the two: the largest relative
    difference of the first 50 losses, the median ms a step after ``warm`` steps, the first step's ms, and each
    side's steps summed (``train_s``, the first included)."""
    import statistics

    first = min(50, len(pg_losses))
    rel = [abs(a - b) / abs(b) for a, b in zip(pg_losses[:first], torch_losses[:first], strict=True)]
    return {
        "max_rel_diff_first_50_losses": max(rel) if rel else None,
        "median_ms_per_step": {
            "picograd": statistics.median(pg_ms[warm:]) if pg_ms else None,
            "pytorch": statistics.median(torch_ms[warm:]) if torch_ms else None,
        },
        "first_step_ms": {"picograd": pg_ms[0], "pytorch": torch_ms[0]} if pg_ms else None,
        "train_s": {"picograd": sum(pg_ms) / 1e3, "pytorch": sum(torch_ms) / 1e3},
    }
