import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_datasets() -> Path:
    """The real LIBSVM files: $CGDBENCH_DATA, else ../shared/datasets next to the checkout.

    Tests that need them fail (never skip) when they are missing: CI always has them.
    """
    env = os.environ.get("CGDBENCH_DATA")
    path = Path(env) if env else ROOT.parent / "shared" / "datasets"
    if not (path / "a1a").is_file():
        pytest.fail(f"real datasets not found at {path}; set CGDBENCH_DATA to ../shared/datasets")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return shared_datasets()


@pytest.fixture(scope="session")
def small_dataset():
    """A small synthetic dataset (fast tests)."""
    from cgdbench.data import Dataset, _canonical_csr, synthetic_a1a
    A, b = synthetic_a1a(seed=3, m=60, d=12, groups=4)
    return Dataset("tiny", _canonical_csr(A), b, "generated", None)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
