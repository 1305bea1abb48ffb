r"""Empirical NTK: the three implementations (jacobian, ntvp, structured) against each other and
against a fourth, naive one written here: one ``torch.autograd.grad`` call per output and input,
:math:`\hat\Theta_{ab}(x_i, x'_j) = \sum_p \partial_p f_a(x_i)\,\partial_p f_b(x'_j)`.

All in float64, where the implementations agree to rounding (1e-10 relative is generous).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import ntklib as nk

# torch.func warns once about torch.jit.script internally; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

RTOL, ATOL = 1e-10, 1e-12


def _inputs(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)  # (n, d)


def naive_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor:
    """Full empirical NTK (n1, n2, k, k) by explicit per-output gradients (slow, obviously right)."""
    params = [p for p in model.parameters() if p.requires_grad]

    def grads(x):  # (n, k, P)
        out = model(x).reshape(x.shape[0], -1)  # (n, k)
        rows = []
        for i in range(out.shape[0]):
            per_output = []
            for a in range(out.shape[1]):
                g = torch.autograd.grad(out[i, a], params, retain_graph=True, allow_unused=True)
                per_output.append(torch.cat([(torch.zeros_like(p) if gi is None else gi).reshape(-1)
                                             for p, gi in zip(params, g)]))  # (P,)
            rows.append(torch.stack(per_output))  # (k, P)
        return torch.stack(rows)

    g1 = grads(x1)
    g2 = g1 if x2 is None else grads(x2)
    return torch.einsum("iap,jbp->ijab", g1, g2)


ARCHS = {
    "relu_bias_k3": lambda: nk.serial(nk.Dense(12, 1.5, 0.1), nk.Relu(), nk.Dense(10, 1.2, 0.3), nk.Relu(),
                                      nk.Dense(3, 0.9, 0.2)),
    "relu_no_bias": lambda: nk.serial(nk.Dense(12, 1.4, None), nk.Relu(), nk.Dense(2, 1.0, None)),
    "standard_k3": lambda: nk.serial(nk.Dense(9, 1.3, 0.2, "standard"), nk.Erf(), nk.Dense(7, 1.1, None, "standard"),
                                     nk.Gelu(), nk.Dense(3, 1.0, 0.5, "standard")),
    "tanh_ends_in_activation": lambda: nk.serial(nk.Dense(8, 1.2, 0.1), nk.Tanh(), nk.Dense(2, 1.0, 0.1), nk.Sin()),
    "deep_linear_k1": lambda: nk.serial(nk.Dense(6, 1.1), nk.Identity(), nk.Dense(6, 0.9), nk.Identity(), nk.Dense(1)),
}


@pytest.fixture(params=sorted(ARCHS))
def net_and_inputs(request):
    net = ARCHS[request.param]().module(4, seed=3, dtype=torch.float64, device="cpu")
    return net, _inputs(5, 4, seed=1), _inputs(3, 4, seed=2)


def test_jacobian_ntvp_structured_match_naive_autograd_full(net_and_inputs):
    net, x1, x2 = net_and_inputs
    for a, b in ((x1, x2), (x1, None)):
        truth = naive_ntk(net, a, b)
        for impl in ("jacobian", "ntvp", "structured"):
            got = nk.empirical_ntk(net, a, b, mode="full", implementation=impl)
            assert got.shape == truth.shape
            torch.testing.assert_close(got, truth, rtol=RTOL, atol=ATOL, msg=lambda m: f"{impl}: {m}")


@pytest.mark.parametrize("impl", ["jacobian", "ntvp", "structured"])
def test_diagonal_and_trace_modes_reduce_the_full_kernel(net_and_inputs, impl):
    """diagonal = Theta_aa (n1, n2, k); trace = (1/k) sum_a Theta_aa (n1, n2), each from its own code path."""
    net, x1, x2 = net_and_inputs
    truth = naive_ntk(net, x1, x2)  # (n1, n2, k, k)
    diag = torch.diagonal(truth, dim1=-2, dim2=-1)  # (n1, n2, k)
    got_d = nk.empirical_ntk(net, x1, x2, mode="diagonal", implementation=impl)
    got_t = nk.empirical_ntk(net, x1, x2, mode="trace", implementation=impl)
    torch.testing.assert_close(got_d, diag, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(got_t, diag.mean(-1), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("chunk_size", [2, 3])
@pytest.mark.parametrize("mode", ["full", "diagonal", "trace"])
def test_chunks_smaller_than_n_give_the_unchunked_kernel(chunk_size, mode):
    net = ARCHS["relu_bias_k3"]().module(4, seed=4, dtype=torch.float64, device="cpu")
    x1, x2 = _inputs(7, 4, seed=5), _inputs(5, 4, seed=6)
    for a, b in ((x1, x2), (x1, None)):
        ref = nk.empirical_ntk(net, a, b, mode=mode, implementation="jacobian", chunk_size=64)
        for impl in ("jacobian", "ntvp", "structured"):
            got = nk.empirical_ntk(net, a, b, mode=mode, implementation=impl, chunk_size=chunk_size)
            torch.testing.assert_close(got, ref, rtol=RTOL, atol=ATOL, msg=lambda m: f"{impl}: {m}")


def test_auto_uses_structured_for_ntklib_nets_and_jacobian_otherwise():
    net = ARCHS["relu_bias_k3"]().module(4, seed=5, dtype=torch.float64, device="cpu")
    x = _inputs(4, 4, seed=7)
    torch.testing.assert_close(nk.empirical_ntk(net, x), nk.empirical_ntk(net, x, implementation="structured"),
                               rtol=0, atol=0)
    generic = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    torch.testing.assert_close(nk.empirical_ntk(generic, x), nk.empirical_ntk(generic, x, implementation="jacobian"),
                               rtol=0, atol=0)


class _SmallConv(nn.Module):
    """(n, 16) -> reshaped to 1x4x4 images -> conv -> tanh -> linear to 3 outputs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, kernel_size=2)
        self.fc = nn.Linear(3 * 3 * 3, 3)

    def forward(self, x):
        h = torch.tanh(self.conv(x.reshape(-1, 1, 4, 4)))  # (n, 3, 3, 3)
        return self.fc(h.flatten(1))  # (n, 3)


class _ScalarOut(nn.Module):
    """Returns (n,), not (n, 1): the empirical NTK treats it as k = 1."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(5, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, x):
        return self.out(torch.sin(self.lin(x))).squeeze(-1)  # (n,)


@pytest.mark.parametrize("make, d", [
    (lambda: nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)), 5),
    (_SmallConv, 16),
    (_ScalarOut, 5),
])
def test_generic_module_jacobian_and_ntvp_match_naive(make, d):
    torch.manual_seed(0)
    model = make().double()
    x1, x2 = _inputs(4, d, seed=8), _inputs(3, d, seed=9)
    truth = naive_ntk(model, x1, x2)
    for impl in ("jacobian", "ntvp"):
        for chunk in (2, 64):
            got = nk.empirical_ntk(model, x1, x2, mode="full", implementation=impl, chunk_size=chunk)
            torch.testing.assert_close(got, truth, rtol=RTOL, atol=ATOL)
    trace = nk.empirical_ntk(model, x1, x2)
    torch.testing.assert_close(trace, torch.diagonal(truth, dim1=-2, dim2=-1).mean(-1), rtol=RTOL, atol=ATOL)


def test_empirical_ntk_is_symmetric_psd_for_x2_none():
    net = ARCHS["standard_k3"]().module(4, seed=6, dtype=torch.float64, device="cpu")
    x = _inputs(8, 4, seed=10)
    for impl in ("jacobian", "ntvp", "structured"):
        th = nk.empirical_ntk(net, x, implementation=impl)  # (n, n)
        torch.testing.assert_close(th, th.T, rtol=1e-12, atol=1e-12)
        ev = torch.linalg.eigvalsh(th)
        assert ev.min() >= -1e-10 * ev.max()


def test_empirical_nngp_is_mean_over_outputs_of_products():
    net = ARCHS["relu_bias_k3"]().module(4, seed=7, dtype=torch.float64, device="cpu")
    x1, x2 = _inputs(5, 4, seed=11), _inputs(3, 4, seed=12)
    with torch.no_grad():
        f1, f2 = net(x1), net(x2)  # (n1, 3), (n2, 3)
    want = sum(f1[:, a, None] * f2[None, :, a] for a in range(3)) / 3  # (n1, n2)
    torch.testing.assert_close(nk.empirical_nngp(net, x1, x2), want, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(nk.empirical_nngp(net, x1), nk.empirical_nngp(net, x1, x1), rtol=0, atol=0)


def test_module_forward_matches_the_parameterization_formulas():
    r"""NTK param: z = W_std/sqrt(n_in) W h + b_std b with N(0,1) parameters; standard: z = W h + b with
    W ~ N(0, W_std^2/n_in), b ~ N(0, b_std^2). The same seed draws the same standard normals, so the
    two parameterizations give the same function at init."""
    x = _inputs(6, 4, seed=13)
    arch_n = nk.serial(nk.Dense(5, 1.7, 0.4), nk.Relu(), nk.Dense(2, 0.8, 0.3))
    arch_s = nk.serial(nk.Dense(5, 1.7, 0.4, "standard"), nk.Relu(), nk.Dense(2, 0.8, 0.3, "standard"))
    net_n = arch_n.module(4, seed=9, dtype=torch.float64, device="cpu")
    net_s = arch_s.module(4, seed=9, dtype=torch.float64, device="cpu")
    W1, b1, W2, b2 = (p.detach() for p in net_n.parameters())
    h = torch.relu(1.7 / 2.0 * x @ W1.T + 0.4 * b1)  # sqrt(n_in) = 2
    want = 0.8 / 5 ** 0.5 * h @ W2.T + 0.3 * b2
    with torch.no_grad():
        torch.testing.assert_close(net_n(x), want, rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(net_s(x), want, rtol=1e-13, atol=1e-14)
    assert net_n[0].weight.std() > 0.5 and net_s[0].weight.std() < 1.7 / 2 * 1.5  # the scale is in the parameters


def test_float32_model_gives_float32_kernel_close_to_float64():
    arch = ARCHS["relu_bias_k3"]()
    x = _inputs(5, 4, seed=14)
    k64 = nk.empirical_ntk(arch.module(4, seed=1, dtype=torch.float64, device="cpu"), x)
    for impl in ("jacobian", "ntvp", "structured"):
        k32 = nk.empirical_ntk(arch.module(4, seed=1, dtype=torch.float32, device="cpu"), x.float(), implementation=impl)
        assert k32.dtype == torch.float32
        torch.testing.assert_close(k32.double(), k64, rtol=1e-4, atol=1e-5)


def test_module_without_seed_is_reproducible_under_torch_manual_seed():
    """seed=None takes its seed from torch's global generator (advancing it, never re-seeding it)."""
    arch = ARCHS["relu_no_bias"]()
    draws = []
    for _ in range(2):
        torch.manual_seed(123)
        net = arch.module(4, dtype=torch.float64, device="cpu")
        draws.append((torch.cat([p.detach().reshape(-1) for p in net.parameters()]), torch.randn(3)))
    torch.testing.assert_close(draws[0][0], draws[1][0], rtol=0, atol=0)
    torch.testing.assert_close(draws[0][1], draws[1][1], rtol=0, atol=0)
    torch.manual_seed(124)
    other = arch.module(4, dtype=torch.float64, device="cpu")
    assert not torch.equal(next(other.parameters()).detach().reshape(-1)[:5], draws[0][0][:5])


def test_same_seed_gives_same_network_in_float32_and_float64():
    arch = ARCHS["relu_bias_k3"]()
    p32 = [p.detach() for p in arch.module(4, seed=5, dtype=torch.float32, device="cpu").parameters()]
    p64 = [p.detach() for p in arch.module(4, seed=5, dtype=torch.float64, device="cpu").parameters()]
    for a, b in zip(p32, p64):
        torch.testing.assert_close(a, b.float(), rtol=0, atol=0)


def test_ntvp_with_many_outputs_and_tiny_chunks_matches_jacobian():
    """ntvp builds its one-hot basis per chunk: chunk 1 and 5 over n2 k = 12 basis vectors."""
    net = nk.serial(nk.Dense(6, 1.1, 0.2), nk.Erf(), nk.Dense(4, 1.0, 0.1)).module(3, seed=2, dtype=torch.float64,
                                                                                   device="cpu")
    x1, x2 = _inputs(2, 3, seed=20), _inputs(3, 3, seed=21)
    ref = nk.empirical_ntk(net, x1, x2, mode="full", implementation="jacobian")
    for chunk in (1, 5, 64):
        got = nk.empirical_ntk(net, x1, x2, mode="full", implementation="ntvp", chunk_size=chunk)
        torch.testing.assert_close(got, ref, rtol=RTOL, atol=ATOL)


def test_structured_path_serves_shortcut_networks_and_auto_picks_it():
    """One contraction for every model with ntk_parts: a shortcut network's structured NTK (all modes) equals
    its Jacobian contraction, and "auto" takes the structured path for it."""
    from ntklib.shortcut import Shortcut

    net = Shortcut(12, K=2, hbar=2, b_std=0.1, inject_std=0.5, out_dim=2).module(4, seed=3, dtype=torch.float64,
                                                                               device="cpu")
    x1, x2 = _inputs(5, 4, seed=21), _inputs(3, 4, seed=22)
    assert net.has_ntk_parts
    for mode in ("trace", "diagonal", "full"):
        ref = nk.empirical_ntk(net, x1, x2, mode=mode, implementation="jacobian")
        got = nk.empirical_ntk(net, x1, x2, mode=mode, implementation="structured", chunk_size=2)
        torch.testing.assert_close(got, ref, rtol=1e-11, atol=1e-12 * float(ref.abs().max()))
    torch.testing.assert_close(nk.empirical_ntk(net, x1), nk.empirical_ntk(net, x1, implementation="structured"),
                               rtol=0, atol=0)  # auto is the structured path: the same call
