"""ntklib.course.setup: what the notebooks' first cell sets, and the smoke flag from the environment."""
import pytest
import torch

from ntklib.course import SMOKE_VARIABLES, setup, smoke_mode


@pytest.fixture
def restore_torch():
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


def test_setup_sets_dtype_threads_and_seed_and_returns_the_smoke_flag(restore_torch, monkeypatch):
    for name in SMOKE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert setup(dtype=torch.float32, threads=1, seed=7) is False
    assert torch.get_default_dtype() is torch.float32 and torch.get_num_threads() == 1
    first = torch.rand(3)
    setup(dtype=torch.float64, seed=7)
    assert torch.get_default_dtype() is torch.float64
    assert torch.equal(torch.rand(3, dtype=torch.float32), first)  # the same seed: the same stream
    for name in SMOKE_VARIABLES:
        monkeypatch.setenv(name, "1")
        assert smoke_mode() and setup() is True
        monkeypatch.setenv(name, "")  # set but empty: not smoke
        assert not smoke_mode()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(dtype=torch.int64), TypeError, "dtype"),
    (dict(dtype="float64"), TypeError, "dtype"),
    (dict(threads=0), ValueError, "threads"),
    (dict(threads=1.5), ValueError, "threads"),
    (dict(seed=0.5), TypeError, "seed"),
])
def test_setup_names_the_bad_argument(restore_torch, kwargs, error, match):
    with pytest.raises(error, match=match):
        setup(**kwargs)
