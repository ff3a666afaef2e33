"""Shared helpers of the asv suite: where the data is, and a compile-free config runner."""
import os
from pathlib import Path


def data_dir():
    """Directory with a1a: $CGDBENCH_DATA, else ../shared/datasets beside the checkout; None if absent."""
    here = Path(__file__).resolve()
    for cand in (os.environ.get("CGDBENCH_DATA"), here.parents[2] / "shared" / "datasets",
                 here.parents[1] / ".." / "shared" / "datasets"):
        if cand and (Path(cand) / "a1a").is_file():
            return str(Path(cand).resolve())
    return None


DATA_DIR = data_dir()
#: the benchmarks say which data they ran on: a1a when present, else the bundled default
DATASET = "a1a" if DATA_DIR else "synthetic-a1a"
