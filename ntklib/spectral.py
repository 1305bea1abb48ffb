r"""Spectra of kernel matrices: eigendecompositions, condition numbers, per-mode convergence, spectral bias.

With :math:`\Theta(X, X) = \sum_i \lambda_i v_i v_i^\top` (:math:`\lambda_1\ge\lambda_2\ge\dots`), gradient
flow on :math:`\frac{1}{2N}\sum(f-y)^2` in the kernel regime (:mod:`ntklib.dynamics`) moves the
training residual independently along each eigenvector:

.. math::
    \langle v_i, f_t(X) - Y\rangle = e^{-\lambda_i t/N}\,\langle v_i, f_0(X) - Y\rangle
    \quad\text{(flow)}, \qquad (1 - \eta\lambda_i/N)^k\,\langle v_i, f_0(X) - Y\rangle \quad\text{(GD)}.

Directions with large :math:`\lambda_i` are learned first; the condition number
:math:`\kappa = \lambda_1/\lambda_n` is the ratio of the slowest to the fastest time scale, and GD is
stable only for :math:`\eta < 2N/\lambda_1` (:func:`max_learning_rate`), so reaching a relative
accuracy :math:`\epsilon` in every direction takes about :math:`\frac{\kappa}{2}\log(1/\epsilon)` steps.

**Spectral bias on the sphere.** For inputs on the sphere :math:`\|x\| = r` in :math:`\mathbb R^d`,
every ntklib kernel (Dense layers see :math:`x\cdot x'/d`) is a function :math:`\kappa(u)` of
:math:`u = x\cdot x'/r^2` only. By the Funk--Hecke theorem its integral operator under the uniform
probability measure has the spherical harmonics of degree :math:`\ell` as eigenfunctions, with

.. math::
    \mu_\ell = \frac{\Gamma(d/2)}{\sqrt\pi\,\Gamma((d-1)/2)}\int_{-1}^{1}\kappa(u)\,
    \frac{C^{(\alpha)}_\ell(u)}{C^{(\alpha)}_\ell(1)}\,(1-u^2)^{(d-3)/2}\,du,\qquad \alpha = \frac{d-2}{2},

(for :math:`d=2`, :math:`\mu_\ell = \frac1\pi\int_0^\pi\kappa(\cos\phi)\cos(\ell\phi)\,d\phi`), and the
Gram matrix of :math:`m` uniform points has eigenvalues :math:`\approx m\mu_\ell` (multiplicity of
degree :math:`\ell`). On :math:`m` equispaced points of the circle the Gram matrix is circulant, so its
eigenvectors are exactly the discrete Fourier modes and its eigenvalues the DFT of its first row
(:func:`circulant_eigenvalues`). For the ReLU NTK :math:`\mu_\ell` decays polynomially in :math:`\ell`
(Bietti & Mairal 2019, arXiv:1905.12173), so low frequencies are learned first. Notebook
06_spectral_bounds derives and plots these.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .linalg import KernelEigen
from .validation import as_outputs, as_symmetric_kernel, as_targets, as_times, check_positive_int

__all__ = ["Spectrum", "eigendecomposition", "condition_number", "max_learning_rate", "TargetProjection",
           "project_targets", "mode_convergence", "residual_modes", "fourier_basis", "circulant_eigenvalues",
           "kernel_of_cosine", "dot_product_kernel_eigenvalues"]


@dataclass(frozen=True)
class Spectrum:
    """``eigenvalues`` (n,) in decreasing order and ``eigenvectors`` (n, n) as matching columns."""
    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor

    @property
    def condition_number(self) -> float:
        """lambda_max / lambda_min (inf when lambda_min <= 0)."""
        lmin = float(self.eigenvalues[-1])
        return float(self.eigenvalues[0]) / lmin if lmin > 0 else math.inf


def eigendecomposition(k, *, name: str = "k") -> Spectrum:
    r""":math:`K = V\,\mathrm{diag}(\lambda)\,V^\top` of the symmetrized PSD ``k`` (n, n) (:class:`ntklib.linalg.KernelEigen`:
    negative rounding-level eigenvalues are 0), in decreasing order (the largest, most quickly learned, first)."""
    eig = KernelEigen.of(as_symmetric_kernel(name, k), name=name)
    return Spectrum(eigenvalues=eig.eigenvalues.flip(0), eigenvectors=eig.eigenvectors.flip(1))


def condition_number(k, *, name: str = "k") -> float:
    r""":math:`\kappa = \lambda_{max}/\lambda_{min}` of a symmetric PSD matrix.

    ``inf`` when :math:`\lambda_{min} \le 0`."""
    return eigendecomposition(k, name=name).condition_number


def max_learning_rate(k_train_train, y_train_size: int | None = None) -> float:
    r"""Largest stable learning rate :math:`2N/\lambda_{max}` of full-batch GD on :math:`\frac{1}{2N}\sum(f-y)^2`.

    :math:`N` = ``y_train_size`` (training points x outputs; default n, one output), as
    neural-tangents' ``predict.max_learning_rate``. Use ``y_train_size=1`` for the loss
    :math:`\frac12\sum(f-y)^2`.
    """
    lam = eigendecomposition(k_train_train, name="k_train_train").eigenvalues
    n = lam.shape[0] if y_train_size is None else check_positive_int("y_train_size", y_train_size)
    if not float(lam[0]) > 0:
        raise ValueError("k_train_train has no positive eigenvalue, so no learning rate is unstable (the kernel does "
                         "not move the outputs at all): pass a positive semi-definite, nonzero kernel matrix.")
    return 2.0 * n / float(lam[0])


@dataclass(frozen=True)
class TargetProjection:
    r"""``coefficients`` :math:`c_i = v_i^\top y` ((n,) or (n, k)), ``power`` :math:`c_i^2/\|y\|^2` (summed over
    outputs) and its running sum ``cumulative_power``, in decreasing-eigenvalue order."""
    eigenvalues: torch.Tensor
    coefficients: torch.Tensor
    power: torch.Tensor
    cumulative_power: torch.Tensor


def project_targets(k, y) -> TargetProjection:
    r"""Coordinates of the targets ``y`` ((n,) or (n, k)) in the eigenbasis of ``k``: :math:`c = V^\top y`.

    ``cumulative_power[j]`` is the fraction of :math:`\|y\|^2` in the top j + 1 eigen-directions: a
    target concentrated on the top of the spectrum is learned fast (kernel-target alignment).
    """
    s = eigendecomposition(k)
    yy, was_1d = as_targets("y", y, s.eigenvalues.shape[0], s.eigenvalues)
    c = s.eigenvectors.T @ yy  # (n, k)
    total = (yy ** 2).sum()
    power = (c ** 2).sum(1) / total if float(total) > 0 else torch.zeros_like(c[:, 0])
    return TargetProjection(eigenvalues=s.eigenvalues, coefficients=c[:, 0] if was_1d else c, power=power,
                            cumulative_power=torch.cumsum(power, 0))


def mode_convergence(k_train_train, t=None, *, steps=None, learning_rate: float | None = None,
                     normalization: float | None = None) -> torch.Tensor:
    r"""Decay factor of each eigen-direction of the training residual, (T, n), decreasing-eigenvalue order.

    Gradient flow: :math:`e^{-\lambda_i t/N}`; gradient descent (``steps`` and ``learning_rate``
    given instead of ``t``): :math:`(1-\eta\lambda_i/N)^k`. :math:`N` = ``normalization``: the number of
    target entries for the loss :math:`\frac{1}{2N}\sum(f-y)^2` (default n, one output), 1 for
    :math:`\frac12\sum`. ``t`` is in the module's time unit (learning rate x steps).
    """
    s = eigendecomposition(k_train_train, name="k_train_train")
    lam = s.eigenvalues.clamp_min(0.0)
    norm = float(lam.shape[0] if normalization is None else normalization)
    if not norm > 0:
        raise ValueError(f"normalization must be > 0; got {normalization!r}.")
    if (t is None) == (steps is None):
        raise ValueError("give either t (gradient flow) or steps with learning_rate (gradient descent).")
    if t is not None:
        tt = as_times("t", t, lam).reshape(-1, 1)
        return torch.exp(-lam * tt / norm)
    if learning_rate is None or not float(learning_rate) > 0:
        raise ValueError(f"learning_rate must be > 0 with steps; got {learning_rate!r}.")
    kk = as_times("steps", steps, lam, integer=True).reshape(-1, 1)
    return (1.0 - float(learning_rate) * lam / norm) ** kk


def residual_modes(k_train_train, y_train, t, *, fx_train_0=0.0, normalization: float | None = None) -> torch.Tensor:
    r"""Coordinates of the residual :math:`f_t(X) - Y` along each eigenvector, (T, n[, k]), under gradient flow.

    :math:`\langle v_i, f_t - Y\rangle = e^{-\lambda_i t/N}\langle v_i, f_0 - Y\rangle` (normalization as
    in :func:`mode_convergence`); their squares sum to :math:`\|f_t(X) - Y\|^2`.
    """
    s = eigendecomposition(k_train_train, name="k_train_train")
    y, was_1d = as_targets("y_train", y_train, s.eigenvalues.shape[0], s.eigenvalues)
    f0 = as_outputs("fx_train_0", fx_train_0, tuple(y.shape), s.eigenvalues)
    c0 = s.eigenvectors.T @ (f0 - y)  # (n, k)
    decay = mode_convergence(k_train_train, t, normalization=normalization)  # (T, n)
    out = decay[:, :, None] * c0  # (T, n, k)
    return out[..., 0] if was_1d else out


# ---------------------------------------------------------------------------------------------
# circle and sphere
# ---------------------------------------------------------------------------------------------
def fourier_basis(n_points: int, max_frequency: int | None = None, *, dtype=torch.float64, device=None):
    r"""Orthonormal discrete Fourier modes on ``n_points`` equispaced angles :math:`\phi_j = 2\pi j/n`.

    Returns ``(basis, frequencies)``: columns :math:`1/\sqrt n`, then :math:`\sqrt{2/n}\cos(\ell\phi)`,
    :math:`\sqrt{2/n}\sin(\ell\phi)` for :math:`\ell = 1..L` (at the Nyquist frequency :math:`\ell = n/2`
    only the cosine, with norm :math:`1/\sqrt n`), and the frequency of each column.
    """
    n = check_positive_int("n_points", n_points)
    top = n // 2 if max_frequency is None else min(int(max_frequency), n // 2)
    phi = 2 * math.pi * torch.arange(n, dtype=dtype, device=device) / n  # (n,)
    cols, freqs = [torch.full((n,), 1 / math.sqrt(n), dtype=dtype, device=device)], [0]
    for ell in range(1, top + 1):
        if 2 * ell == n:
            cols.append(torch.cos(ell * phi) / math.sqrt(n))
            freqs.append(ell)
        else:
            cols += [torch.cos(ell * phi) * math.sqrt(2 / n), torch.sin(ell * phi) * math.sqrt(2 / n)]
            freqs += [ell, ell]
    return torch.stack(cols, 1), torch.tensor(freqs, device=device)


def circulant_eigenvalues(k, *, check: bool = True) -> torch.Tensor:
    r"""Eigenvalue of each frequency :math:`\ell = 0..\lfloor n/2\rfloor` of a symmetric circulant matrix.

    :math:`\lambda_\ell = \sum_j K_{0j}\cos(2\pi \ell j/n)` (the real DFT of the first row, ``torch.fft.rfft``);
    frequency :math:`\ell` has multiplicity 2 except 0 and n/2. A kernel on equispaced points of the
    circle is circulant because it depends only on the angle between the points. ``check`` raises
    if ``k`` is not circulant up to rounding.
    """
    k = as_symmetric_kernel("k", k)
    n = k.shape[0]
    row = k[0]  # (n,)
    if check:
        idx = (torch.arange(n, device=k.device)[None, :] - torch.arange(n, device=k.device)[:, None]) % n
        err = float((k - row[idx]).abs().max())
        if err > 1e-8 * max(float(row.abs().max()), 1e-300):
            raise ValueError(f"k is not circulant (max deviation {err:.3g}); its points are not equispaced on a circle "
                             "or the kernel is not rotation invariant.")
    return torch.fft.rfft(row).real


def kernel_of_cosine(arch, dim: int, *, radius: float = 1.0, get: str = "ntk") -> Callable:
    r"""The profile :math:`\kappa(u)` of an ntklib architecture's kernel on the sphere of ``radius`` in R^dim.

    Returns ``kappa(u)`` for a tensor of cosines ``u`` in [-1, 1]: the kernel between
    :math:`x = r e_1` and :math:`x' = r(u e_1 + \sqrt{1-u^2} e_2)`, evaluated with ``arch.kernel``.
    """
    dim = check_positive_int("dim", dim)
    if dim < 2:
        raise ValueError("dim must be >= 2 (a circle or a sphere).")

    def kappa(u: torch.Tensor) -> torch.Tensor:
        u = torch.as_tensor(u, dtype=torch.float64).clamp(-1.0, 1.0).reshape(-1)  # (q,)
        x1 = torch.zeros(1, dim, dtype=u.dtype, device=u.device)
        x1[0, 0] = radius
        x2 = torch.zeros(u.shape[0], dim, dtype=u.dtype, device=u.device)
        x2[:, 0] = radius * u
        x2[:, 1] = radius * torch.sqrt((1 - u ** 2).clamp_min(0.0))
        return getattr(arch.kernel(x1, x2, get=get), get)[0]  # (q,)

    return kappa


def dot_product_kernel_eigenvalues(kappa: Callable, dim: int, max_degree: int, *, n_quad: int = 2000) -> torch.Tensor:
    r"""Funk--Hecke eigenvalues :math:`\mu_0..\mu_L` of a dot-product kernel :math:`\kappa(u)` on the sphere in R^dim.

    Under the uniform probability measure (module docstring); by Gauss--Gegenbauer quadrature with
    ``n_quad`` nodes (Gauss--Chebyshev for dim = 2). ``kappa`` maps a float64 tensor of cosines to
    kernel values, e.g. :func:`kernel_of_cosine`. Non-smooth kernels (ReLU at u = 1) converge
    algebraically in ``n_quad``.
    """
    from scipy import special

    dim = check_positive_int("dim", dim)
    if dim < 2:
        raise ValueError("dim must be >= 2.")
    L = int(max_degree)
    if L < 0:
        raise ValueError(f"max_degree must be >= 0; got {max_degree!r}.")
    n_quad = check_positive_int("n_quad", n_quad)
    if dim == 2:
        # (1/pi) int_0^pi kappa(cos phi) cos(l phi) dphi with the midpoint rule (exact for trig. polynomials)
        phi = (np.arange(n_quad) + 0.5) * np.pi / n_quad
        vals = np.asarray(kappa(torch.as_tensor(np.cos(phi))).detach().cpu(), dtype=np.float64)
        return torch.tensor([np.mean(vals * np.cos(ell * phi)) for ell in range(L + 1)], dtype=torch.float64)
    a = (dim - 2) / 2.0
    nodes, weights = special.roots_gegenbauer(n_quad, a)  # weight (1 - u^2)^(a - 1/2) = (1-u^2)^((d-3)/2)
    vals = np.asarray(kappa(torch.as_tensor(nodes)).detach().cpu(), dtype=np.float64)
    const = math.gamma(dim / 2) / (math.sqrt(math.pi) * math.gamma((dim - 1) / 2))
    out = []
    for ell in range(L + 1):
        p = special.eval_gegenbauer(ell, a, nodes) / special.eval_gegenbauer(ell, a, 1.0)
        out.append(const * np.sum(weights * vals * p))
    return torch.tensor(out, dtype=torch.float64)
