"""Argument validation, the one home for it in ntklib: every error names the argument, what was expected and what was given."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["as_inputs", "check_nonneg", "check_positive_int", "check_choice", "default_device"]


def default_device() -> torch.device:
    """CUDA when it is present, the CPU otherwise (used only for inputs that are not tensors)."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


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


def _to_tensor(name: str, x: Any, dtype: torch.dtype | None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, (np.ndarray, list, tuple)):
        try:
            arr = np.asarray(x)
        except Exception as err:  # ragged lists and the like
            raise TypeError(f"{name} must be a 2-D array of numbers (n, d); could not convert it: {err}") from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name} must hold numbers; got an array of dtype {arr.dtype}.")
        t = torch.as_tensor(arr, device=default_device())
    else:
        raise TypeError(f"{name} must be a torch.Tensor or numpy array of shape (n, d); got {type(x).__name__}.")
    if t.is_complex():
        raise TypeError(f"{name} must be real; got complex dtype {t.dtype}.")
    if dtype is not None:
        t = t.to(dtype)
    elif not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    return t


def as_inputs(x1: Any, x2: Any = None, *, dtype: torch.dtype | None = None,
              names: tuple[str, str] = ("x1", "x2"), in_dim: int | None = None):
    """Validate and convert a pair of input batches.

    Both must be 2-D ``(n, d)`` with the same ``d`` (and ``d == in_dim`` when given), finite,
    real, on the same device and -- when both arrive as tensors -- of the same dtype. Tensors
    stay on their device; numpy arrays go to :func:`default_device`. ``dtype`` (if given) is
    the dtype the computation runs in.
    """
    n1, n2 = names
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
        t = _to_tensor(name, x, dtype)
        if t.ndim != 2:
            hint = " For a single input use x[None, :]." if t.ndim == 1 else ""
            raise ValueError(f"{name} must be 2-D with shape (n, d); got shape {tuple(t.shape)}.{hint}")
        if t.shape[0] == 0 or t.shape[1] == 0:
            raise ValueError(f"{name} must have at least one row and one column; got shape {tuple(t.shape)}.")
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            raise ValueError(f"{name} must be finite; it has {int(bad.sum())} NaN or infinite entries "
                             f"(first at row {int(bad.any(1).nonzero()[0])}).")
        if in_dim is not None and t.shape[1] != in_dim:
            raise ValueError(f"{name} must have {in_dim} columns (the network's in_dim); got shape {tuple(t.shape)}.")
        out.append(t)
    if out[1] is not None:
        if out[0].shape[1] != out[1].shape[1]:
            raise ValueError(f"{n1} and {n2} must have the same number of columns d; got "
                             f"{tuple(out[0].shape)} and {tuple(out[1].shape)}.")
        if out[0].device != out[1].device:
            raise ValueError(f"{n1} and {n2} must be on the same device; got {out[0].device} and {out[1].device}.")
    return out[0], out[1]
