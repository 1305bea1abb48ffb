r"""Spectra of kernel matrices and operators: training speed mode by mode, spectral bias, learning curves.

**Training.** With :math:`\Theta(X, X) = \sum_i \lambda_i v_i v_i^\top` (:math:`\lambda_1\ge\lambda_2\ge\dots`), gradient
flow on :math:`\frac{1}{2N}\sum(f-y)^2` in the kernel regime (:mod:`ntklib.dynamics`) moves the training
residual independently along each eigenvector:

.. math::
    \langle v_i, f_t(X) - Y\rangle = e^{-\lambda_i t/N}\,\langle v_i, f_0(X) - Y\rangle
    \quad\text{(flow)}, \qquad (1 - \eta\lambda_i/N)^k\,\langle v_i, f_0(X) - Y\rangle \quad\text{(GD)}.

Directions with large :math:`\lambda_i` are learned first. GD is stable only for :math:`\eta < 2N/\lambda_1`
(:func:`max_learning_rate`); at :math:`\eta = N/\lambda_1` a mode that carries part of the residual needs
about :math:`(\lambda_1/\lambda_i)\log(1/\epsilon)` steps (:func:`steps_to_fit`), the condition number
:math:`\lambda_1/\lambda_n` for the last one.

**Spectral bias on the sphere.** For inputs on the sphere :math:`\|x\| = r` in :math:`\mathbb R^d`,
every ntklib kernel (Dense layers see :math:`x\cdot x'/d`) is a function :math:`\kappa(u)` of
:math:`u = x\cdot x'/r^2` only. By the Funk--Hecke theorem its integral operator under the uniform
probability measure has the spherical harmonics of degree :math:`\ell` as eigenfunctions
(:func:`sphere_multiplicity` of them), with eigenvalue

.. math::
    \mu_\ell = \frac{\Gamma(d/2)}{\sqrt\pi\,\Gamma((d-1)/2)}\int_{-1}^{1}\kappa(u)\,P_{\ell,d}(u)\,(1-u^2)^{(d-3)/2}\,du,
    \qquad P_{\ell,d} = C^{((d-2)/2)}_\ell/C^{((d-2)/2)}_\ell(1)

(:func:`legendre_polynomials`, :func:`dot_product_kernel_eigenvalues`, :func:`sphere_spectrum`; for
:math:`d=2`, :math:`\mu_\ell = \frac1\pi\int_0^\pi\kappa(\cos\phi)\cos(\ell\phi)\,d\phi`), and the Gram matrix of
:math:`m` uniform points has eigenvalues :math:`\approx m\mu_\ell`. On :math:`m` equispaced points of the
circle the Gram matrix is circulant: its eigenvectors are exactly the discrete Fourier modes and its
eigenvalues the DFT of its first row (:func:`circulant_eigenvalues`). For the ReLU NTK :math:`\mu_\ell`
decays like :math:`\ell^{-d}` (Bietti & Mairal 2019, arXiv:1905.12173), so low frequencies are learned
first; without biases the odd degrees :math:`\ge 3` of the two-layer ReLU NTK vanish.

**Learning curves.** :func:`learning_curve` predicts the test error of kernel regression against the
number of samples from the eigenvalues and the target's power per eigen-direction (Bordelon, Canatar &
Pehlevan 2020; Simon et al. 2021), through the self-consistent :func:`effective_regularization`.
Notebook 06_spectral_bounds derives all of this and measures it; ``docs/spectral.md`` has the numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch

from .linalg import KernelEigen
from .validation import as_outputs, as_symmetric_kernel, as_targets, as_times, check_nonneg, check_positive_int

__all__ = ["Spectrum", "eigendecomposition", "condition_number", "max_learning_rate", "TargetProjection",
           "project_targets", "band_norms", "mode_convergence", "residual_modes", "fourier_basis", "circulant_eigenvalues",
           "kernel_of_cosine", "legendre_polynomials", "sphere_multiplicity", "zonal_harmonic",
           "dot_product_kernel_eigenvalues", "SphereSpectrum", "sphere_spectrum", "steps_to_fit",
           "effective_regularization", "LearningCurve", "learning_curve"]


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


def band_norms(coordinates, bands) -> torch.Tensor:
    r"""Norm of ``coordinates`` (..., n) inside each band of eigen-directions: (..., len(bands)).

    ``bands`` is a sequence of index lists (e.g. the eigenvalues of one degree on the sphere, or the
    cosine and sine of one frequency on the circle). Eigenvectors inside a cluster of nearly equal
    eigenvalues are not stable under small perturbations of the kernel (a finite width, training);
    the norm of a residual inside the whole cluster is.
    """
    c = torch.as_tensor(coordinates)
    return torch.stack([c[..., list(b)].norm(dim=-1) for b in bands], -1)


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


def legendre_polynomials(max_degree: int, dim: int, u) -> torch.Tensor:
    r"""The Legendre polynomials of dimension ``dim``, :math:`P_{\ell,d}(u)` for :math:`\ell = 0..L`: (L + 1, *u.shape).

    :math:`P_{\ell,d} = C^{(\alpha)}_\ell/C^{(\alpha)}_\ell(1)` with :math:`\alpha = (d-2)/2` (normalized
    Gegenbauer polynomials, :math:`P_{\ell,d}(1) = 1`): the Chebyshev polynomials :math:`T_\ell` for
    d = 2, the Legendre polynomials for d = 3. Computed by the three-term recurrence
    :math:`P_{\ell+1} = \big((2\ell + d - 2)\,u\,P_\ell - \ell\,P_{\ell-1}\big)/(\ell + d - 2)`,
    :math:`P_0 = 1`, :math:`P_1 = u`, stable on :math:`[-1, 1]`. By the addition theorem
    :math:`\sum_{m=1}^{N(d,\ell)} Y_{\ell m}(x)Y_{\ell m}(x') = N(d,\ell)\,P_{\ell,d}(x\cdot x')` for unit
    x, x' and spherical harmonics orthonormal under the uniform probability measure.
    """
    dim = check_positive_int("dim", dim)
    if dim < 2:
        raise ValueError(f"dim must be >= 2 (a circle or a sphere); got {dim}.")
    L = int(max_degree)
    if L < 0:
        raise ValueError(f"max_degree must be >= 0; got {max_degree!r}.")
    u = torch.as_tensor(u, dtype=torch.float64) if not isinstance(u, torch.Tensor) else u
    out = torch.empty((L + 1,) + tuple(u.shape), dtype=u.dtype, device=u.device)
    out[0] = 1.0
    if L >= 1:
        out[1] = u
    for ell in range(1, L):
        out[ell + 1] = ((2 * ell + dim - 2) * u * out[ell] - ell * out[ell - 1]) / (ell + dim - 2)
    return out


def sphere_multiplicity(dim: int, degree):
    r"""Number :math:`N(d, \ell)` of linearly independent spherical harmonics of degree :math:`\ell` on the sphere in R^d.

    :math:`N(d,\ell) = \binom{\ell+d-1}{d-1} - \binom{\ell+d-3}{d-1}` (harmonic polynomials of degree
    :math:`\ell` in d variables): 1 for :math:`\ell = 0`, 2 on the circle (d = 2, :math:`\cos\ell\phi`
    and :math:`\sin\ell\phi`), :math:`2\ell+1` on :math:`S^2`, and :math:`\sim 2\ell^{d-2}/(d-2)!` for large
    :math:`\ell`. ``degree`` an int (returns an int) or a sequence (returns an int64 tensor).
    """
    dim = check_positive_int("dim", dim)
    if dim < 2:
        raise ValueError(f"dim must be >= 2; got {dim}.")

    def comb(a, b):
        return math.comb(a, b) if a >= b >= 0 else 0

    def one(ell):
        ell = int(ell)
        if ell < 0:
            raise ValueError(f"degree must be >= 0; got {ell}.")
        return comb(ell + dim - 1, dim - 1) - comb(ell + dim - 3, dim - 1)

    if isinstance(degree, (int, np.integer)) and not isinstance(degree, bool):
        return one(degree)
    return torch.tensor([one(ell) for ell in np.asarray(degree).reshape(-1)], dtype=torch.int64)


def zonal_harmonic(x, axis, degree: int) -> torch.Tensor:
    r"""The zonal spherical harmonic of ``degree`` about ``axis``, of unit norm: :math:`\sqrt{N(d,\ell)}\,P_{\ell,d}(\hat x\cdot\hat a)`.

    ``x`` (n, d) (each row is projected on the unit sphere, :math:`\hat x = x/|x|`), ``axis`` (d,).
    Unit norm under the uniform probability measure, :math:`\mathbb E_x[Z_\ell(x)^2] = 1`, and
    orthogonal to every harmonic of another degree: a target made of zonal harmonics of degrees
    :math:`\ell` with amplitudes :math:`a_\ell` has power :math:`a_\ell^2` in degree :math:`\ell`
    (what :func:`learning_curve` calls ``target_power``). Returns (n,).
    """
    x = torch.as_tensor(x)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"x must have shape (n, d) with d >= 2; got {tuple(x.shape)}.")
    a = torch.as_tensor(axis, dtype=x.dtype, device=x.device).reshape(-1)
    if a.shape[0] != x.shape[1] or not float(a.norm()) > 0:
        raise ValueError(f"axis must be a nonzero vector of length {x.shape[1]}; got shape {tuple(a.shape)}.")
    u = (x / x.norm(dim=1, keepdim=True)) @ (a / a.norm())  # (n,)
    ell = int(degree)
    return math.sqrt(sphere_multiplicity(x.shape[1], ell)) * legendre_polynomials(ell, x.shape[1], u.clamp(-1, 1))[ell]


@lru_cache(maxsize=8)
def _gauss_legendre_angles(n_quad: int):
    """Gauss--Legendre nodes and weights on [0, pi] (cached: scipy computes them in O(n_quad))."""
    from scipy import special

    nodes, weights = special.roots_legendre(n_quad)
    return (nodes + 1) * (math.pi / 2), weights * (math.pi / 2)


def dot_product_kernel_eigenvalues(kappa: Callable, dim: int, max_degree: int, *, n_quad: int | None = None
                                   ) -> torch.Tensor:
    r"""Funk--Hecke eigenvalues :math:`\mu_0..\mu_L` of a dot-product kernel :math:`\kappa(u)` on the sphere in R^dim.

    Under the uniform probability measure (module docstring),

    .. math::
        \mu_\ell = \frac{\Gamma(d/2)}{\sqrt\pi\,\Gamma((d-1)/2)}\int_0^\pi \kappa(\cos\vartheta)\,
        P_{\ell,d}(\cos\vartheta)\,\sin^{d-2}\vartheta\,d\vartheta

    (:func:`legendre_polynomials`; for d = 2, :math:`\mu_\ell = \frac1\pi\int_0^\pi\kappa(\cos\vartheta)\cos\ell\vartheta\,d\vartheta`),
    by Gauss--Legendre quadrature in the angle :math:`\vartheta` with ``n_quad`` nodes (default
    :math:`\max(512, 4L + 64)`). Integrating in the angle rather than in :math:`u` matters: the ReLU
    kernels are analytic in :math:`\vartheta` but behave like :math:`\sqrt{1-u}` at :math:`u = 1`, so the rule
    converges exponentially in ``n_quad`` instead of algebraically. ``kappa`` maps a float64 tensor
    of cosines to kernel values, e.g. :func:`kernel_of_cosine`.
    """
    dim = check_positive_int("dim", dim)
    if dim < 2:
        raise ValueError("dim must be >= 2.")
    L = int(max_degree)
    if L < 0:
        raise ValueError(f"max_degree must be >= 0; got {max_degree!r}.")
    n_quad = max(512, 4 * L + 64) if n_quad is None else check_positive_int("n_quad", n_quad)
    theta, w = _gauss_legendre_angles(n_quad)
    u = torch.as_tensor(np.cos(theta), dtype=torch.float64)  # (q,)
    vals = torch.as_tensor(kappa(u), dtype=torch.float64).detach().cpu().reshape(-1)  # (q,)
    if vals.shape[0] != n_quad:
        raise ValueError(f"kappa must return one value per cosine; got shape {tuple(vals.shape)} for {n_quad} cosines.")
    const = math.gamma(dim / 2) / (math.sqrt(math.pi) * math.gamma((dim - 1) / 2))
    weights = torch.as_tensor(w * np.sin(theta) ** (dim - 2), dtype=torch.float64)  # (q,)
    return const * (legendre_polynomials(L, dim, u) @ (vals * weights))  # (L + 1,)


@dataclass(frozen=True)
class SphereSpectrum:
    r"""Spectrum of a dot-product kernel on the sphere in R^``dim``, grouped by degree.

    ``eigenvalues`` :math:`\mu_\ell` (L + 1,) (Funk--Hecke, uniform probability measure),
    ``multiplicities`` :math:`N(d,\ell)` (L + 1,) and ``tail_trace``
    :math:`= \kappa(1) - \sum_{\ell\le L} N(d,\ell)\mu_\ell`, the part of the trace
    :math:`\sum_{\ell\ge0}N(d,\ell)\mu_\ell = \kappa(1)` (Mercer at x = x') carried by the degrees above L.
    """
    dim: int
    eigenvalues: torch.Tensor
    multiplicities: torch.Tensor
    tail_trace: float

    @property
    def degrees(self) -> torch.Tensor:
        return torch.arange(self.eigenvalues.shape[0])


def sphere_spectrum(kappa: Callable, dim: int, max_degree: int, *, n_quad: int | None = None) -> SphereSpectrum:
    r"""Eigenvalues per degree, their multiplicities and the trace left above ``max_degree`` (:class:`SphereSpectrum`).

    A Gram matrix of m uniform points on the sphere has, for large m, about :math:`N(d,\ell)`
    eigenvalues near :math:`m\mu_\ell`; :func:`learning_curve` takes these three arrays as they are.
    """
    mu = dot_product_kernel_eigenvalues(kappa, dim, max_degree, n_quad=n_quad)
    mult = sphere_multiplicity(dim, range(int(max_degree) + 1))
    k1 = float(torch.as_tensor(kappa(torch.ones(1, dtype=torch.float64))).reshape(-1)[0])
    return SphereSpectrum(dim=int(dim), eigenvalues=mu, multiplicities=mult,
                          tail_trace=k1 - float((mult.to(mu.dtype) * mu).sum()))


# ---------------------------------------------------------------------------------------------
# training time, mode by mode
# ---------------------------------------------------------------------------------------------
def steps_to_fit(eigenvalues, coefficients, learning_rate: float, tolerance: float, *,
                 normalization: float = 1.0) -> float:
    r"""Predicted number of gradient-descent steps until the training residual has shrunk by ``tolerance``.

    In the kernel regime, k steps of :math:`f \leftarrow f - \frac{\eta}{N}\Theta(f - y)` leave the residual
    :math:`r_k = \sum_i c_i(1 - \eta\lambda_i/N)^k v_i` (:func:`mode_convergence`), with ``eigenvalues``
    :math:`\lambda_i` of :math:`\Theta(X, X)`, ``coefficients`` :math:`c_i = v_i^\top r_0` ((n,) or (n, k) for k
    outputs, e.g. :func:`project_targets` of :math:`f_0 - y`) and :math:`N` = ``normalization`` (1 for
    the loss :math:`\frac12\sum(f - y)^2`, the number of target entries for the mean loss). Returns the
    smallest integer k with :math:`\|r_k\| \le` ``tolerance`` :math:`\times\|r_0\|` (found by doubling and
    bisection; :math:`\|r_k\|` is non-increasing when every mode is stable), and ``inf`` when that never
    happens: a mode with :math:`c_i \neq 0` is unstable (:math:`\eta\lambda_i/N > 2`) or does not decay
    (:math:`\lambda_i = 0`, or :math:`\eta\lambda_i/N = 2`) and holds more than the tolerance. Modes with
    :math:`c_i = 0` do not count, whatever their eigenvalue. For a single mode this is
    :math:`\lceil\log(1/\epsilon)/(-\log|1 - \eta\lambda_i/N|)\rceil \approx \log(1/\epsilon)\,N/(\eta\lambda_i)`: at
    :math:`\eta = N/\lambda_{max}` the slowest weighted mode needs about
    :math:`(\lambda_{max}/\lambda_i)\log(1/\epsilon)` steps, the condition number when it is :math:`\lambda_{min}`.
    """
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64).reshape(-1)
    c = torch.as_tensor(coefficients, dtype=torch.float64)
    if c.ndim == 2:
        c2 = (c ** 2).sum(1)
    elif c.ndim == 1:
        c2 = c ** 2
    else:
        raise ValueError(f"coefficients must have shape (n,) or (n, k); got {tuple(c.shape)}.")
    if c2.shape[0] != lam.shape[0]:
        raise ValueError(f"coefficients must have one row per eigenvalue ({lam.shape[0]}); got {tuple(c.shape)}.")
    eta = check_nonneg("learning_rate", learning_rate)
    eps = check_nonneg("tolerance", tolerance)
    norm = check_nonneg("normalization", normalization)
    if eta == 0 or norm == 0:
        raise ValueError("learning_rate and normalization must be > 0.")
    total = float(c2.sum())
    target = eps ** 2 * total
    if total <= target:
        return 0
    a = (eta * lam.clamp_min(0.0) / norm).double()  # (n,)
    w = c2 > 0
    if bool((w & (a > 2)).any()):
        return math.inf
    factor = (1.0 - a).abs()  # (n,) |1 - eta lambda / N| <= 1 for every weighted mode now
    if float(c2[w & (factor >= 1.0)].sum()) > target:
        return math.inf
    logf = torch.where(factor > 0, torch.log(factor.clamp_min(1e-300)), torch.full_like(factor, -math.inf))

    def remaining(k: int) -> float:  # ||r_k||^2
        return float((c2 * torch.exp(2.0 * k * logf)).sum())

    hi = 1
    while remaining(hi) > target:
        hi *= 2
        if hi > 2 ** 62:
            return math.inf
    lo = hi // 2  # remaining(lo) > target (or lo = 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if remaining(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi


# ---------------------------------------------------------------------------------------------
# learning curves from the spectrum (eigenlearning)
# ---------------------------------------------------------------------------------------------
def _group_arrays(eigenvalues, multiplicities, target_power=None):
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64).reshape(-1).cpu()
    if bool((lam < 0).any()) or not bool(torch.isfinite(lam).all()):
        raise ValueError("eigenvalues must be finite and >= 0.")
    m = (torch.ones_like(lam) if multiplicities is None
         else torch.as_tensor(multiplicities, dtype=torch.float64).reshape(-1).cpu())
    if m.shape != lam.shape or bool((m < 0).any()):
        raise ValueError(f"multiplicities must be >= 0, one per eigenvalue ({lam.shape[0]}); got shape {tuple(m.shape)}.")
    if target_power is None:
        return lam.numpy(), m.numpy(), None
    p = torch.as_tensor(target_power, dtype=torch.float64).reshape(-1).cpu()
    if p.shape != lam.shape or bool((p < 0).any()):
        raise ValueError(f"target_power must be >= 0, one per eigenvalue ({lam.shape[0]}); got shape {tuple(p.shape)}.")
    return lam.numpy(), m.numpy(), p.numpy()


def _kappa(lam: np.ndarray, m: np.ndarray, n: float, ridge: float, tail: float) -> float:
    """The root kappa > 0 of sum m lam/(lam + kappa) + (ridge + tail)/kappa = n (0 when there is none)."""
    from scipy.optimize import brentq

    if ridge + tail == 0.0 and float(m[lam > 0].sum()) <= n:
        return 0.0
    top = float((m * lam).sum()) + ridge + tail

    def excess(log_kappa):  # decreasing in kappa
        kap = math.exp(log_kappa)
        return float((m * lam / (lam + kap)).sum()) + (ridge + tail) / kap - n

    hi = math.log(top / n)  # there the left side is <= top / kappa = n
    lo = hi - 10.0
    while excess(lo) < 0.0:
        lo -= 10.0
        if lo < -745.0:  # below the smallest float64: an interpolation with ~no room left
            return 0.0
    return math.exp(brentq(excess, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500))


def effective_regularization(eigenvalues, n, *, multiplicities=None, ridge: float = 0.0,
                             tail_trace: float = 0.0) -> torch.Tensor:
    r"""The effective regularization :math:`\kappa(n)` of kernel ridge regression with n samples, (len(n),).

    The positive root of (Simon et al. 2021, arXiv:2110.03922; Bordelon, Canatar & Pehlevan 2020,
    arXiv:2002.02561, whose :math:`\kappa` is n times this one)

    .. math::
        \sum_i m_i\,\frac{\lambda_i}{\lambda_i + \kappa} + \frac{\delta + T}{\kappa} = n,

    with ``eigenvalues`` :math:`\lambda_i` of the kernel's integral operator under the data distribution
    (a Gram matrix of n samples has eigenvalues :math:`\approx n\lambda_i`), their ``multiplicities``
    :math:`m_i` (default 1), the absolute ``ridge`` :math:`\delta` of :math:`(K + \delta I)^{-1}` and the trace
    :math:`T` = ``tail_trace`` of the eigenvalues left out of the list, all much smaller than
    :math:`\kappa` (:math:`\lambda/(\lambda+\kappa) \approx \lambda/\kappa` there). The left side decreases in
    :math:`\kappa`, so the root is unique; it is found by Brent's method in :math:`\log\kappa`. Without ridge
    or tail and with no more modes than samples (:math:`\sum_{\lambda_i > 0} m_i \le n`) it is 0.
    """
    lam, m, _ = _group_arrays(eigenvalues, multiplicities)
    delta, tail = check_nonneg("ridge", ridge), check_nonneg("tail_trace", tail_trace)
    ns = np.asarray(n, dtype=np.float64).reshape(-1)
    if not np.all(ns > 0) or not np.all(np.isfinite(ns)):
        raise ValueError(f"n must hold finite numbers of samples > 0; got {n!r}.")
    return torch.tensor([_kappa(lam, m, float(v), delta, tail) for v in ns], dtype=torch.float64)


@dataclass(frozen=True)
class LearningCurve:
    r"""Predicted learning curve (:func:`learning_curve`), one row per number of samples.

    ``n`` (S,), ``kappa`` (S,), ``learnability`` :math:`L_i = \lambda_i/(\lambda_i+\kappa)` (S, G),
    ``overfitting`` :math:`\mathcal E_0 = n/(n - \sum_i m_iL_i^2)` (S,), ``test_mse`` the expected
    :math:`\mathbb E_x[(\hat f(x) - f^*(x))^2]` against the noiseless target (S,), and its two parts
    ``bias`` :math:`\mathcal E_0\sum_i(1-L_i)^2 p_i` and ``variance`` :math:`(\mathcal E_0 - 1)\sigma^2`.
    """
    n: torch.Tensor
    kappa: torch.Tensor
    learnability: torch.Tensor
    overfitting: torch.Tensor
    test_mse: torch.Tensor
    bias: torch.Tensor
    variance: torch.Tensor


def learning_curve(eigenvalues, target_power, n, *, multiplicities=None, ridge: float = 0.0, noise_var: float = 0.0,
                   tail_trace: float = 0.0, tail_power: float = 0.0) -> LearningCurve:
    r"""Test error of kernel ridge regression against the number of samples, predicted from the spectrum.

    **Setting.** Inputs :math:`x \sim p`; Mercer decomposition :math:`k(x,x') = \sum_i\lambda_i\phi_i(x)\phi_i(x')`
    with :math:`\mathbb E_p[\phi_i\phi_j] = \delta_{ij}`; target :math:`f^* = \sum_i v_i\phi_i`; labels
    :math:`y_j = f^*(x_j) + \varepsilon_j`, :math:`\varepsilon_j` i.i.d. with variance :math:`\sigma^2` = ``noise_var``;
    predictor :math:`\hat f(x) = k(x, X)(K + \delta I)^{-1}y` (ntklib's ``kernel_regression`` with
    ``diag_reg=delta, diag_reg_absolute_scale=True``; the NTK trained to convergence is :math:`\delta = 0`).
    Eigenvalues may come in groups of ``multiplicities`` :math:`m_i` equal ones (the degrees of a kernel
    on the sphere, :func:`sphere_spectrum`) with ``target_power`` :math:`p_i = \sum v^2` over the group.

    **Prediction** (Bordelon, Canatar & Pehlevan 2020, arXiv:2002.02561; Canatar, Bordelon & Pehlevan
    2021, arXiv:2006.13198; Simon, Dickens, Karkada & DeWeese 2021, arXiv:2110.03922):

    .. math::
        \kappa:\ \sum_i m_i L_i + \frac{\delta}{\kappa} = n,\quad L_i = \frac{\lambda_i}{\lambda_i+\kappa},\qquad
        \mathcal E_0 = \frac{n}{n - \sum_i m_i L_i^2},\qquad
        \mathbb E\,\|\hat f - f^*\|^2 = \mathcal E_0\Big(\sum_i (1 - L_i)^2 p_i + \sigma^2\Big) - \sigma^2.

    **Where it comes from.** In the eigenbasis, :math:`\hat f = T(v + \text{noise})` with the linear map
    :math:`T = \Lambda\Phi^\top(\Phi\Lambda\Phi^\top + \delta I)^{-1}\Phi` (:math:`\Phi_{ji} = \phi_i(x_j)`). Its trace
    is *exactly* :math:`n - \delta\,\mathrm{tr}(K+\delta I)^{-1}` ("conservation of learnability": n for
    interpolation). If the features behave like independent Gaussians, :math:`\mathbb E\,T` is diagonal with
    entries :math:`L_i`: each mode sees the others as an extra ridge :math:`\kappa` fixed by the trace;
    the mean predictor has coefficients :math:`L_iv_i`, and the fluctuations of T and the noise add the
    variance factor :math:`\mathcal E_0`. The prediction is exact as n and the number of modes grow together;
    at finite n it is an approximation: for kernel regression on the sphere the measured error is within
    13 % of it on :math:`S^4` (d = 5, n = 4..512) but 15-50 % above it on :math:`S^2` for n >= 128, whose
    harmonics are far from Gaussian features (docs/spectral.md).

    **Normalizations.** ``eigenvalues`` are those of the integral operator under the data distribution
    (the Gram matrix of n samples has eigenvalues :math:`\approx n\lambda_i`), so :math:`\delta` is the ridge
    added to the Gram matrix itself; ntklib's relative ``diag_reg`` is :math:`\delta/\kappa(1)` on the
    sphere. ``tail_trace`` :math:`T` and ``tail_power`` stand for modes beyond the list, all with
    :math:`\lambda \ll \kappa`: they add :math:`T/\kappa` to :math:`\sum_i m_iL_i`, nothing to :math:`\sum m_iL_i^2`,
    and their target power to the error unlearned. Bias and variance are returned apart
    (:class:`LearningCurve`); the error against noisy test labels is ``test_mse + noise_var``.
    Where :math:`\sum_i m_iL_i^2 \ge n` (as many samples as modes, no ridge) :math:`\mathcal E_0` is infinite.
    """
    lam, m, p = _group_arrays(eigenvalues, multiplicities, target_power)
    sigma2 = check_nonneg("noise_var", noise_var)
    delta = check_nonneg("ridge", ridge)
    tail, tail_p = check_nonneg("tail_trace", tail_trace), check_nonneg("tail_power", tail_power)
    ns = np.asarray(n, dtype=np.float64).reshape(-1)
    kap = effective_regularization(lam, ns, multiplicities=m, ridge=delta, tail_trace=tail).numpy()  # (S,)
    with np.errstate(divide="ignore", invalid="ignore"):
        L = np.where(lam[None, :] > 0, lam[None, :] / (lam[None, :] + kap[:, None]), 0.0)  # (S, G)
        used = (m[None, :] * L ** 2).sum(1)  # (S,)
        e0 = np.where(ns - used > 1e-12 * ns, ns / (ns - used), np.inf)
        bias = e0 * (((1.0 - L) ** 2 * p[None, :]).sum(1) + tail_p)
        variance = (e0 - 1.0) * sigma2
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    return LearningCurve(n=t(ns), kappa=t(kap), learnability=t(L), overfitting=t(e0), test_mse=t(bias + variance),
                         bias=t(bias), variance=t(variance))
