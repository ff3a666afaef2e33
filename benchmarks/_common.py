"""Shared helpers of the asv suite: which data the benchmarks ran on (see ``__init__`` for threads and data)."""
from cgdbench import data

#: None: every benchmark resolves dataset names by cgdbench's data-directory rule
DATA_DIR = None
#: the benchmarks say which data they ran on: a1a when present, else the bundled default
DATASET = "a1a" if data.locate("a1a") else "synthetic-a1a"
