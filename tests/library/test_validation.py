"""Bad input gets a clear error that names the argument and what was expected (checked with match=)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import ntklib as nk


def _x(n=4, d=3, dtype=torch.float64):
    return torch.randn(n, d, dtype=dtype)  # (n, d)


@pytest.fixture
def arch():
    return nk.serial(nk.Dense(8, 1.2, 0.1), nk.Relu(), nk.Dense(1))


@pytest.fixture
def net(arch):
    return arch.module(3, seed=0, dtype=torch.float64, device="cpu")


# ---- inputs of arch.kernel ---------------------------------------------------------------------

@pytest.mark.parametrize("x1, x2, exc, match", [
    (torch.randn(3, dtype=torch.float64), None, ValueError, r"x1 must be 2-D with shape \(n, d\).*x\[None, :\]"),
    (_x(), torch.randn(2, 3, 1, dtype=torch.float64), ValueError, r"x2 must be 2-D"),
    (_x(4, 3), _x(2, 5), ValueError, r"x1 and x2 must have the same number of columns d"),
    (torch.empty(0, 3, dtype=torch.float64), None, ValueError, r"x1 must have at least one row"),
    ("abc", None, TypeError, r"x1 must be a torch.Tensor or numpy array"),
    (_x(), [[1, 2], [3]], TypeError, r"x2 must be a 2-D array of numbers"),
    (_x().to(torch.complex128), None, TypeError, r"x1 must be real"),
    (_x(), _x(dtype=torch.float32), TypeError, r"x1 and x2 must have the same dtype"),
])
def test_kernel_rejects_bad_shapes_types_and_dtypes(arch, x1, x2, exc, match):
    with pytest.raises(exc, match=match):
        arch.kernel(x1, x2)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("which", ["x1", "x2"])
def test_kernel_rejects_nan_and_inf_naming_the_argument(arch, bad, which):
    x1, x2 = _x(), _x(3, 3)
    (x1 if which == "x1" else x2)[1, 2] = bad
    with pytest.raises(ValueError, match=rf"{which} must be finite; it has 1 NaN or infinite entries \(first at row 1\)"):
        arch.kernel(x1, x2)


def test_kernel_rejects_inputs_on_different_devices(arch):
    with pytest.raises(ValueError, match=r"x1 and x2 must be on the same device; got cpu and meta"):
        arch.kernel(_x(), _x(2, 3).to("meta"))


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(get="ntkk"), ValueError, r"get must be one of \['nngp', 'ntk'\]; got 'ntkk'"),
    (dict(get=("nngp", "foo")), ValueError, r"get must be one of"),
    (dict(batch_size=0), ValueError, r"batch_size must be a positive integer; got 0"),
    (dict(batch_size=2.5), ValueError, r"batch_size must be a positive integer"),
])
def test_kernel_rejects_bad_options(arch, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        arch.kernel(_x(), **kwargs)


def test_kernel_diagonal_with_x2_is_rejected(arch):
    with pytest.raises(ValueError, match=r"diagonal=True .*x2=None"):
        arch.kernel(_x(), _x(), diagonal=True)


# ---- layers --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(width=8, W_std=-1.0), ValueError, r"W_std must be a finite number >= 0; got -1.0"),
    (dict(width=8, W_std=float("nan")), ValueError, r"W_std must be a finite number >= 0"),
    (dict(width=8, W_std="big"), TypeError, r"W_std must be a real number; got 'big'"),
    (dict(width=8, b_std=-0.1), ValueError, r"b_std must be a finite number >= 0"),
    (dict(width=8, b_std=float("inf")), ValueError, r"b_std must be a finite number >= 0"),
    (dict(width=0), ValueError, r"width must be a positive integer; got 0"),
    (dict(width=2.5), ValueError, r"width must be a positive integer; got 2.5"),
    (dict(width=True), ValueError, r"width must be a positive integer; got True"),
    (dict(width=8, parameterization="mup"), ValueError, r"parameterization must be one of \['ntk', 'standard'\]"),
])
def test_dense_rejects_bad_hyperparameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        nk.Dense(**kwargs)


def test_serial_rejects_non_layers_and_classes():
    with pytest.raises(TypeError, match=r"layer 1 must be an ntklib layer .*ntklib.Elementwise\(fn\)"):
        nk.serial(nk.Dense(4), torch.relu, nk.Dense(1))
    with pytest.raises(TypeError, match=r"layer 1 must be an ntklib layer"):
        nk.serial(nk.Dense(4), "relu")
    with pytest.raises(TypeError, match=r"layer 0 is the class Relu; call it: Relu\(\.\.\.\)"):
        nk.serial(nk.Relu, nk.Dense(1))
    with pytest.raises(ValueError, match=r"serial\(\.\.\.\) needs at least one layer"):
        nk.serial()


def test_elementwise_rejects_non_callables_and_non_elementwise_functions():
    with pytest.raises(TypeError, match=r"fn must be a callable elementwise function"):
        nk.Elementwise(3.0)
    with pytest.raises(TypeError, match=r"fn must be a callable"):
        nk.Elementwise("tanh")
    with pytest.raises(TypeError, match=r"fn must be elementwise: map a tensor to a tensor of the same shape"):
        nk.Elementwise(lambda t: t.sum())
    with pytest.raises(TypeError, match=r"fn must accept a torch.Tensor"):
        nk.Elementwise(lambda t: float(t))  # float() of a 5-element tensor raises
    with pytest.raises(TypeError, match=r"fn_prime must be callable or None"):
        nk.Elementwise(torch.tanh, fn_prime=1.0)
    with pytest.raises(ValueError, match=r"deg must be a positive integer; got 0"):
        nk.Elementwise(torch.tanh, deg=0)


@pytest.mark.parametrize("make, match", [
    (lambda: nk.ABRelu(float("nan"), 1.0), r"ABRelu slopes a and b must be finite"),
    (lambda: nk.LeakyRelu(float("inf")), r"must be finite"),
    (lambda: nk.Erf(a=float("nan")), r"Erf parameters a, b, c must be finite"),
    (lambda: nk.Sin(b=float("inf")), r"Sin parameters a, b, c must be finite"),
])
def test_activation_parameters_must_be_finite(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_module_rejects_bad_in_dim_and_wrong_input_width(arch):
    with pytest.raises(ValueError, match=r"in_dim must be a positive integer; got 0"):
        arch.module(0)
    net = arch.module(3, seed=0, dtype=torch.float64, device="cpu")
    with pytest.raises(ValueError, match=r"x must have shape \(n, 3\); got \(4, 5\)"):
        net(_x(4, 5))


# ---- empirical and Monte Carlo ---------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(mode="trace_mean"), ValueError, r"mode must be one of \['diagonal', 'full', 'trace'\]; got 'trace_mean'"),
    (dict(implementation="fast"), ValueError, r"implementation must be one of"),
    (dict(chunk_size=0), ValueError, r"chunk_size must be a positive integer; got 0"),
])
def test_empirical_ntk_rejects_unknown_mode_implementation_and_chunk(net, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        nk.empirical_ntk(net, _x(), **kwargs)


def test_empirical_ntk_rejects_inputs_in_another_dtype_than_the_model(net):
    with pytest.raises(TypeError, match=r"x1 has dtype torch.float32 but the model's parameters are torch.float64"):
        nk.empirical_ntk(net, _x(dtype=torch.float32))
    with pytest.raises(TypeError, match=r"x1 and x2 must have the same dtype"):
        nk.empirical_ntk(net, _x(), _x(dtype=torch.float32))
    with pytest.raises(TypeError, match=r"x1 has dtype torch.float32"):
        nk.empirical_nngp(net, _x(dtype=torch.float32))


def test_empirical_ntk_rejects_inputs_on_another_device_than_the_model(arch):
    net_meta = arch.module(3, seed=0, dtype=torch.float64, device="meta")
    with pytest.raises(ValueError, match=r"x1 is on cpu but the model's parameters are on meta"):
        nk.empirical_ntk(net_meta, _x())
    net = arch.module(3, seed=0, dtype=torch.float64, device="cpu")
    with pytest.raises(ValueError, match=r"x1 and x2 must be on the same device"):
        nk.empirical_ntk(net, _x(), _x().to("meta"))


def test_empirical_ntk_rejects_non_modules_structured_on_generic_and_parameterless(net):
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module; got function"):
        nk.empirical_ntk(lambda t: t, _x())
    generic = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    with pytest.raises(ValueError, match=r"implementation='structured' needs a model that exposes its dense maps"):
        nk.empirical_ntk(generic, _x(), implementation="structured")
    with pytest.raises(ValueError, match=r"model has no parameters"):
        nk.empirical_ntk(nn.Tanh(), _x())
    with pytest.raises(ValueError, match=r"x1 must have 3 columns \(the network.s in_dim\)"):
        nk.empirical_ntk(net, _x(4, 5))


def test_monte_carlo_rejects_bad_n_samples_and_get(arch):
    with pytest.raises(ValueError, match=r"n_samples must be a positive integer; got 0"):
        nk.monte_carlo_kernel(arch, _x(), n_samples=0)
    with pytest.raises(ValueError, match=r"get must be one of \['nngp', 'ntk'\]; got 'ntkk'"):
        nk.monte_carlo_kernel(arch, _x(), n_samples=2, get=("nngp", "ntkk"))
    with pytest.raises(ValueError, match=r"x1 must be finite"):
        nk.monte_carlo_kernel(arch, torch.full((2, 3), float("nan"), dtype=torch.float64), n_samples=2)


def test_kernel_linear_algebra_and_dynamics_name_the_bad_argument():
    """Errors a user can act on: each names the argument and what was expected (no bare torch error)."""
    from ntklib.dynamics import cross_entropy_flow
    from ntklib.linalg import psd_solve

    k = torch.eye(4, dtype=torch.float64) + 0.1
    with pytest.raises(ValueError, match=r"rhs must have shape \(4, m\)"):
        psd_solve(k, torch.ones(3, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="k_train_train must have at least one row"):
        nk.kernel_regression(torch.zeros(0, 0), torch.zeros(2, 0), torch.zeros(0))
    with pytest.raises(TypeError, match="k_train_train has dtype torch.float16"):
        nk.kernel_regression(k.half(), k.half(), torch.ones(4).half())
    with pytest.raises(ValueError, match="no positive eigenvalue"):
        nk.spectral.max_learning_rate(torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="RK4 steps"):  # bounded work instead of hanging
        cross_entropy_flow(k, torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64), 1e9)


def test_training_and_empirical_ntk_name_the_bad_argument(net):
    x = _x(4, 3)
    with pytest.raises(ValueError, match="x_test must have 3 columns"):
        nk.train_network(net, x, torch.ones(4, dtype=torch.float64), learning_rate=0.1, steps=1, x_test=_x(2, 5))

    class TwoOutputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 1).double()

        def forward(self, t):
            return self.lin(t), t

    with pytest.raises(TypeError, match="returned a tuple"):
        nk.empirical_ntk(TwoOutputs(), x)
    # integer data are exact in the model's dtype: no dtype error, the same kernel as the float input
    ints = torch.arange(12).reshape(4, 3) % 5
    torch.testing.assert_close(nk.empirical_ntk(net, ints), nk.empirical_ntk(net, ints.to(torch.float64)),
                               rtol=0, atol=0)
