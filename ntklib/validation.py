"""Argument validation, the one home for it in ntklib: every error names the argument, what was expected and what was given."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["as_inputs", "check_nonneg", "check_positive_int", "check_choice", "check_input_shape", "default_device"]


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
        t = _to_tensor(name, x, dtype)
        ndims = (2,) if not spatial or (out and out[0].ndim == 2) else (2, 3, 4) if not out else (out[0].ndim,)
        if t.ndim not in ndims:
            hint = " For a single input use x[None, :]." if t.ndim == 1 else ""
            if ndims == (2,):
                like = "" if not spatial else f" like {n1}" if out else " (or channel-first (n, C, L) or (n, C, H, W))"
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
