import os

import pytest
import torch

# Tests run on the CPU in float64 unless they say otherwise; no progress bars in test output.
os.environ.setdefault("NTKLIB_NO_PROGRESS", "1")
# The tests are many small float64 operations: one thread is faster than two for them and
# keeps timings stable on a busy 2-core machine (notebooks run in their own kernels).
# NTK_TEST_THREADS=2 runs the suite with two threads: no test may depend on the thread count
# (it changes how BLAS and parallel loops split and sum their work).
torch.set_num_threads(int(os.environ.get("NTK_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
