import os

import pytest
import torch

# Tests run on the CPU in float64 unless they say otherwise; no progress bars in test output.
os.environ.setdefault("NTKLIB_NO_PROGRESS", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
