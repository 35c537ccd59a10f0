"""``write_json``: how every bench script writes its ``bench/results/`` file (atomically: a reader never sees half
of it)."""

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
