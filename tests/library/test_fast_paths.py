"""ntklib's fast paths against its plain ones: the same numbers, computed differently.

* ``Layer.kernel`` on large kernels of entrywise architectures (``ntklib.batching``: variances
  shared by all tiles, row strips, upper triangle only, mirrored) vs one pass of ``kernel_fn``
  over the whole matrix;
* ``ABRelu.dual``'s in-place evaluation vs the out-of-place formula (``_dual_differentiable``,
  the code used when inputs need gradients), for every broadcast pattern callers use;
* the Jacobian-contraction empirical NTK in blocks of inputs and parameter groups (any
  ``chunk_size``) vs NTK-vector products, on a model that is not an ntklib network.

The speed itself is measured in ``benchmarks/`` (bench_analytic.py, bench_empirical.py).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import ntklib as nk

EPS = torch.finfo(torch.float64).eps  # 2.2e-16: tolerances below are multiples of float64 rounding


@pytest.mark.parametrize("x2_rows", [None, 900])
def test_row_strip_path_matches_untiled_recursion_with_exact_diagonal(x2_rows):
    """The default path for large kernels (row strips) against one pass over the whole matrix."""
    gen = torch.Generator().manual_seed(1)
    x1 = torch.randn(1201, 30, generator=gen, dtype=torch.float64)  # 1201 x 1201 or 900 entries: row strips
    x1[7], x1[8], x1[9] = x1[3], -x1[3], 0.0  # repeated, negated and zero rows
    x2 = None if x2_rows is None else torch.randn(x2_rows, 30, generator=gen, dtype=torch.float64)
    arch = nk.serial(nk.Dense(64, 1.5, 0.1), nk.Relu(), nk.Dense(64, 1.2, None, "standard"), nk.Erf(1.1, 0.7, 0.2),
                     nk.Dense(64, 1.3, 0.0), nk.Gelu(), nk.Dense(64, 1.4, 0.2), nk.LeakyRelu(0.1), nk.Dense(1, 1.0, 0.1))
    assert arch.entrywise
    strips = arch.kernel(x1, x2)
    whole = arch.kernel_fn(nk.Kernel.from_inputs(x1, x2))
    for f in ("nngp", "ntk"):
        a, b = getattr(strips, f), getattr(whole, f)
        # Two computations: a GEMM on a strip and one on the whole matrix may round differently (BLAS
        # blocking, instruction set), and elementwise kernels take vector or scalar paths by position.
        # Each entry passes 9 layers of a few correctly rounded operations: 64 eps of the scale is ample.
        assert float((a - b).abs().max()) <= 64 * EPS * float(b.abs().max()), f
        if x2 is None:  # exact by construction: the upper triangle is mirrored, the nngp diagonal reset
            assert torch.equal(a, a.T), f"{f} from row strips is not exactly symmetric"
            if f == "nngp":  # to the shared variances, the same numbers as the untiled path's
                assert torch.equal(a.diagonal(), b.diagonal()), "nngp diagonal differs from the untiled path"
    # the variances: the same vector operations on the same vectors in both paths
    assert torch.equal(strips.var1, whole.var1)


@pytest.mark.parametrize("x2_rows", [None, 5])
def test_quadrature_tiles_match_untiled_kernel_including_its_symmetrization(x2_rows, monkeypatch):
    """Quadrature is not swap-symmetric: for x2=None the untiled path averages K and K^T at every layer,
    the tiles average both orders of the rule entry by entry -- the same numbers up to rounding."""
    import ntklib.batching
    gen = torch.Generator().manual_seed(3)
    x1 = torch.randn(11, 4, generator=gen, dtype=torch.float64)
    x2 = None if x2_rows is None else torch.randn(x2_rows, 4, generator=gen, dtype=torch.float64)
    arch = nk.serial(nk.Dense(8, 1.5, 0.2), nk.Tanh(deg=24), nk.Dense(8, 1.2, 0.1), nk.Relu(), nk.Dense(1))
    assert arch.entrywise
    whole = arch.kernel_fn(nk.Kernel.from_inputs(x1, x2))
    monkeypatch.setattr(ntklib.batching, "tile_entries", lambda device: 8)  # tiles of 1 x 8 pairs
    tiles = arch.kernel(x1, x2)
    for f in ("nngp", "ntk"):
        a, b = getattr(tiles, f), getattr(whole, f)
        assert float((a - b).abs().max()) <= 64 * EPS * float(b.abs().max()), f
        if x2 is None:  # mirrored tiles, diagonal reset to the shared variances: exact by construction
            assert torch.equal(a, a.T)
    if x2 is None:
        assert torch.equal(tiles.nngp.diagonal(), tiles.var1)


def _pos(shape: tuple) -> torch.Tensor:
    """Positive values of the given shape (a fixed seed per shape)."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape) + 1), dtype=torch.float64) + 0.1


@pytest.mark.parametrize("act", [nk.Relu(), nk.LeakyRelu(0.2), nk.ABRelu(-0.3, 1.2)], ids=repr)
@pytest.mark.parametrize("shapes", [((4, 5), (4, 1), (1, 5)), ((5,), (), ()), ((), (5,), (5,)), ((3,), (3,), (3,))],
                         ids=["matrix", "c-vector", "v-vectors", "diagonal"])
def test_abrelu_in_place_dual_equals_out_of_place_formula(act, shapes):
    c, v1, v2 = (_pos(s) for s in shapes)
    c = 0.1 * c  # |c| < sqrt(v1 v2)
    fast, slow = act.dual(c, v1, v2, need_dot=True), act._dual_differentiable(c, v1, v2, need_dot=True)
    # The same formula, but in-place and out-of-place loops over broadcast shapes may evaluate atan2
    # by a vector or a scalar routine: agreement to a few units in the last place, not bit for bit.
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=8 * EPS, atol=8 * EPS * float(b.abs().max()))


def test_abrelu_dual_zero_norm_input_gives_right_angle_in_both_evaluations():
    c = torch.zeros(3, 2, dtype=torch.float64)
    v1 = torch.tensor([[0.0], [1.0], [2.0]], dtype=torch.float64)  # first input has zero norm
    v2 = torch.tensor([[1.5, 0.0]], dtype=torch.float64)
    nngp, dot = nk.Relu().dual(c, v1, v2, need_dot=True)
    # theta = pi/2 wherever a variance is 0 (and for c = 0 anyway): dot = 1/4, nngp = sqrt(v1 v2)/(2 pi)
    torch.testing.assert_close(dot, torch.full_like(dot, 0.25), rtol=0, atol=0)
    torch.testing.assert_close(nngp, torch.sqrt(v1 * v2) / (2 * torch.pi), rtol=1e-15, atol=0)
    slow = nk.Relu()._dual_differentiable(c, v1, v2, need_dot=True)
    torch.testing.assert_close(nngp, slow[0], rtol=8 * EPS, atol=0)
    torch.testing.assert_close(dot, slow[1], rtol=0, atol=0)  # theta = pi/2 is set, not computed: exact


class _Small(nn.Module):
    """Not an ntklib network: two linear maps (one large weight), a bias-free one, a scale parameter."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.a = nn.Linear(6, 40, dtype=torch.float64)
        self.b = nn.Linear(40, 3, bias=False, dtype=torch.float64)
        self.scale = nn.Parameter(torch.tensor([1.3], dtype=torch.float64))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))

    def forward(self, x):
        return self.scale * self.b(torch.tanh(self.a(x)))  # (n, 3)


@pytest.mark.parametrize("x2_rows", [None, 5])
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 64])
def test_jacobian_ntk_in_blocks_matches_ntk_vector_products(chunk_size, x2_rows):
    """Every blocking (inputs, packed parameter groups, a weight split over inputs) against NTK-vector products."""
    model = _Small()
    gen = torch.Generator().manual_seed(2)
    x1 = torch.randn(7, 6, generator=gen, dtype=torch.float64)
    x2 = None if x2_rows is None else torch.randn(x2_rows, 6, generator=gen, dtype=torch.float64)
    ref = nk.empirical_ntk(model, x1, x2, mode="full", implementation="ntvp")
    for mode in ("full", "diagonal", "trace"):
        got = nk.empirical_ntk(model, x1, x2, mode=mode, implementation="jacobian", chunk_size=chunk_size)
        want = {"full": ref, "diagonal": torch.diagonal(ref, dim1=-2, dim2=-1),
                "trace": torch.diagonal(ref, dim1=-2, dim2=-1).mean(-1)}[mode]
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12 * float(ref.abs().max()))
        if x2 is None:  # mirrored blocks: exactly symmetric
            swapped = got.transpose(0, 1)
            assert torch.equal(got, swapped.transpose(2, 3) if mode == "full" else swapped)
