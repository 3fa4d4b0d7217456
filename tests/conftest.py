from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/reference_counts.py


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
