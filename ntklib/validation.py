"""Argument validation, the one home for it in ntklib: every error names the argument, what was expected and what was given."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["default_device", "check_positive_int", "check_input_shape", "check_nonneg", "check_choice", "as_tensor",
           "as_inputs",
           "as_kernel_matrix", "as_symmetric_kernel", "as_targets", "as_outputs", "as_times"]


def default_device() -> torch.device:
    """CUDA when it is present, the CPU otherwise (used only for inputs that are not tensors)."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


def check_input_shape(name: str, value: Any) -> int | tuple[int, ...]:
    """The shape of one input: a positive int d (vectors) or (C, L) / (C, H, W) of positive ints."""
    if isinstance(value, (tuple, list, torch.Size)):
        if len(value) in (2, 3) and all(not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= 1
                                        for v in value):
            return tuple(int(v) for v in value)
        raise ValueError(f"{name} must be a positive integer d, or the channel-first shape (C, L) or (C, H, W) "
                         f"of one input, with positive entries; got {value!r}.")
    return check_positive_int(name, value)


def check_nonneg(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number; got {value!r}.") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}.")
    return v


def check_choice(name: str, value: Any, choices) -> Any:
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)!r}; got {value!r}.")
    return value


def as_tensor(name: str, x: Any, *, like: torch.Tensor | None = None, dtype: torch.dtype | None = None,
              integer_dtype: torch.dtype = torch.float64, keep_array_dtype: bool = False,
              finite: bool = True, what: str = "an array of numbers") -> torch.Tensor:
    """``x`` as a real floating tensor, or an error naming ``name``.

    Tensors keep their device; numpy arrays, lists and numbers go to ``like``'s device (else
    :func:`default_device`). The dtype is ``dtype`` if given, else ``like``'s, else: a tensor keeps its
    floating dtype, an array becomes float64 (or keeps its floating dtype with ``keep_array_dtype``),
    and integers and bools become ``integer_dtype``. Complex values, non-numeric arrays and (with
    ``finite``) NaN or infinite entries are rejected; ``what`` describes the expected value in errors.
    """
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, (np.ndarray, list, tuple, float, int, np.number, np.bool_)):
        try:
            arr = np.asarray(x)
        except Exception as err:  # ragged lists and the like
            raise TypeError(f"{name} must be {what}; could not convert it: {err}") from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name} must hold real numbers; got an array of dtype {arr.dtype}.")
        t = torch.as_tensor(arr, device=like.device if like is not None else default_device())
        if t.is_floating_point() and not keep_array_dtype:
            t = t.to(torch.float64)
    else:
        raise TypeError(f"{name} must be a torch.Tensor or a numpy array; got {type(x).__name__}.")
    if t.is_complex():
        raise TypeError(f"{name} must be real; got complex dtype {t.dtype}.")
    if like is not None and t.device != like.device:
        raise ValueError(f"{name} is on {t.device} but the kernel is on {like.device}; move one of them.")
    target = dtype if dtype is not None else (like.dtype if like is not None else None)
    if target is not None:
        t = t.to(target)
    elif not t.is_floating_point():
        t = t.to(integer_dtype)
    if finite:
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            raise ValueError(f"{name} must be finite; it has {int(bad.sum())} NaN or infinite entries.")
    return t


def as_inputs(x1: Any, x2: Any = None, *, dtype: torch.dtype | None = None,
              names: tuple[str, str] = ("x1", "x2"), in_dim: int | tuple[int, ...] | None = None,
              spatial: bool = False):
    """Validate and convert a pair of input batches.

    Both must be 2-D ``(n, d)`` with the same ``d`` (and ``d == in_dim`` when given), finite,
    real, on the same device and -- when both arrive as tensors -- of the same dtype. With
    ``spatial=True``, or a tuple ``in_dim`` (C, L) / (C, H, W), channel-first ``(n, C, L)`` and
    ``(n, C, H, W)`` batches are accepted too, and both must have the same shape after the batch
    axis (equal to ``in_dim`` when given). Tensors stay on their device; numpy arrays go to
    :func:`default_device`. ``dtype`` (if given) is the dtype the computation runs in.
    """
    n1, n2 = names
    spatial = spatial or isinstance(in_dim, tuple)
    if isinstance(x1, torch.Tensor) and isinstance(x2, torch.Tensor):
        if x1.device != x2.device:
            raise ValueError(f"{n1} and {n2} must be on the same device; got {x1.device} and {x2.device}.")
        if x1.dtype != x2.dtype:
            raise TypeError(f"{n1} and {n2} must have the same dtype; got {x1.dtype} and {x2.dtype}.")
    out = []
    for name, x in ((n1, x1), (n2, x2)):
        if x is None:
            out.append(None)
            continue
        if not isinstance(x, (torch.Tensor, np.ndarray, list, tuple)):
            raise TypeError(f"{name} must be a torch.Tensor or numpy array of shape (n, d); got {type(x).__name__}.")
        t = as_tensor(name, x, dtype=dtype, integer_dtype=torch.get_default_dtype(), keep_array_dtype=True,
                      finite=False, what="a 2-D array of numbers (n, d)")
        ndims = (2,) if not spatial or (out and out[0].ndim == 2) else (2, 3, 4) if not out else (out[0].ndim,)
        if t.ndim not in ndims:
            hint = " For a single input use x[None, :]." if t.ndim == 1 else ""
            if ndims == (2,):
                like = f" like {n1}" if spatial else ""
                raise ValueError(f"{name} must be 2-D with shape (n, d){like}; got shape {tuple(t.shape)}.{hint}")
            if not out:
                raise ValueError(f"{name} must be 2-D with shape (n, d) (or channel-first (n, C, L) or "
                                 f"(n, C, H, W)); got shape {tuple(t.shape)}.{hint}")
            raise ValueError(f"{name} must be {out[0].ndim}-D like {n1} (shape {tuple(out[0].shape)}); "
                             f"got shape {tuple(t.shape)}.")
        if min(t.shape) == 0:
            what = "at least one row and one column" if t.ndim == 2 else "no empty axis"
            raise ValueError(f"{name} must have {what}; got shape {tuple(t.shape)}.")
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            raise ValueError(f"{name} must be finite; it has {int(bad.sum())} NaN or infinite entries "
                             f"(first at row {int(bad.reshape(t.shape[0], -1).any(1).nonzero()[0])}).")
        if in_dim is not None:
            want = (in_dim,) if isinstance(in_dim, int) else tuple(in_dim)
            if tuple(t.shape[1:]) != want:
                if t.ndim == 2 and len(want) == 1:
                    raise ValueError(f"{name} must have {in_dim} columns (the network's in_dim); got shape "
                                     f"{tuple(t.shape)}.")
                raise ValueError(f"{name} must have shape (n, {', '.join(map(str, want))}) (the network's in_dim, "
                                 f"channel-first); got shape {tuple(t.shape)}.{_channel_last_hint(t.shape, want)}")
        out.append(t)
    if out[1] is not None:
        if out[0].shape[1:] != out[1].shape[1:]:
            if out[0].ndim == 2:
                raise ValueError(f"{n1} and {n2} must have the same number of columns d; got "
                                 f"{tuple(out[0].shape)} and {tuple(out[1].shape)}.")
            raise ValueError(f"{n1} and {n2} must have the same shape after the batch axis (C, *S); got "
                             f"{tuple(out[0].shape)} and {tuple(out[1].shape)}.")
        if out[0].device != out[1].device:
            raise ValueError(f"{n1} and {n2} must be on the same device; got {out[0].device} and {out[1].device}.")
    return out[0], out[1]


def _channel_last_hint(shape, want) -> str:
    """A hint when ``shape`` (n, *S, C) is channel-last for the channel-first ``want`` (C, *S)."""
    shape = tuple(shape)
    if len(shape) == len(want) + 1 and shape[1:] == tuple(want[1:]) + (want[0],):
        order = ", ".join(["0", str(len(shape) - 1)] + [str(a) for a in range(1, len(shape) - 1)])
        return f" It looks channel-last: ntklib uses torch's channel-first layout; use x.permute({order})."
    return ""


# -- kernel matrices, targets, outputs and times (regression, dynamics, predict, spectral) ----------
def as_kernel_matrix(name: str, k: Any, *, square: bool = False, like: torch.Tensor | None = None,
                     shape: tuple | None = None) -> torch.Tensor:
    """A finite 2-D kernel matrix (``square`` (n, n) if asked; ``shape`` with None for any size)."""
    if hasattr(k, "ntk") and hasattr(k, "nngp") and not isinstance(k, torch.Tensor):
        raise TypeError(f"{name} must be a kernel matrix (a tensor), not a Kernel record; "
                        f"pass {name}.ntk or {name}.nngp.")
    t = as_tensor(name, k, like=like)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D kernel matrix; got shape {tuple(t.shape)}.")
    if t.numel() == 0:
        raise ValueError(f"{name} must have at least one row and one column; got shape {tuple(t.shape)}.")
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} has dtype {t.dtype}; kernel solves need float32 or float64 (float64 recommended: "
                        f"kernel matrices are often badly conditioned). Pass {name}.double().")
    if square and t.shape[0] != t.shape[1]:
        raise ValueError(f"{name} must be square (n, n); got shape {tuple(t.shape)}.")
    if shape is not None:
        for axis, want in enumerate(shape):
            if want is not None and t.shape[axis] != want:
                raise ValueError(f"{name} must have shape {tuple('?' if s is None else s for s in shape)}; "
                                 f"got {tuple(t.shape)}.")
    return t


def as_symmetric_kernel(name: str, k: Any) -> torch.Tensor:
    """A square kernel matrix, checked symmetric up to rounding and returned as (K + K^T)/2."""
    k = as_kernel_matrix(name, k, square=True)
    scale = float(k.abs().amax())
    diff = k - k.T  # (n, n), the one temporary besides the result
    asym = float(diff.abs_().amax())
    del diff
    tol = 1e3 * torch.finfo(k.dtype).eps * max(scale, 1e-300) * max(1, k.shape[0]) ** 0.5
    if asym > max(tol, 1e-6 * scale):
        raise ValueError(f"{name} must be a symmetric kernel matrix; max |K - K^T| = {asym:.3g} "
                         f"(max |K| = {scale:.3g}).")
    return (k + k.T).mul_(0.5)


def as_targets(name: str, y: Any, n: int, like: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``y`` as (n, k) in ``like``'s dtype and device, and whether it was 1-D."""
    t = as_tensor(name, y, like=like)
    if t.ndim == 1:
        t, was_1d = t[:, None], True
    elif t.ndim == 2:
        was_1d = False
    else:
        raise ValueError(f"{name} must have shape (n,) or (n, k); got {tuple(t.shape)}.")
    if t.shape[0] != n:
        raise ValueError(f"{name} must have {n} rows (one per training point of the kernel); "
                         f"got shape {tuple(t.shape)}.")
    return t, was_1d


def as_outputs(name: str, f: Any, shape: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """Initial outputs broadcast to ``shape`` (n, k): a scalar, (n,), (n, 1) or (n, k)."""
    t = as_tensor(name, f, like=like)
    if t.ndim == 1 and t.shape[0] == shape[0]:
        t = t[:, None]
    try:
        return torch.broadcast_to(t, shape)
    except RuntimeError:
        raise ValueError(f"{name} must broadcast to the outputs' shape {shape}; got shape {tuple(t.shape)}.") \
            from None


def as_times(name: str, t: Any, like: torch.Tensor, *, integer: bool = False) -> torch.Tensor:
    """Times (or, with ``integer``, numbers of steps) >= 0: a scalar or 1-D, in ``like``'s dtype and device."""
    if isinstance(t, torch.Tensor):
        tt = t.detach().to(device=like.device, dtype=like.dtype)
    else:
        try:
            tt = torch.as_tensor(np.asarray(t, dtype=np.float64), dtype=like.dtype, device=like.device)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number or a 1-D sequence of numbers; got {t!r}.") from None
    if tt.ndim > 1:
        raise ValueError(f"{name} must be a scalar or 1-D; got shape {tuple(tt.shape)}.")
    if bool(torch.isnan(tt).any()) or bool((tt < 0).any()):
        raise ValueError(f"{name} must be >= 0 (and not NaN); got {t!r}.")
    if integer:
        if bool(torch.isinf(tt).any()) or bool((tt != tt.round()).any()):
            raise ValueError(f"{name} must be non-negative integers (numbers of steps); got {t!r}.")
    return tt
