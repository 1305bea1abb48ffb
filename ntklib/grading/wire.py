"""Plain data from the student's kernel, decoded into fresh objects of exact, trusted types.

The kernel (:mod:`ntklib.grading.agent`) answers in JSON. Scalars are JSON's own (``null``, booleans,
strings, finite numbers); everything else is a tagged object::

    {"$t": "int", "v": "123456789012345678901"}          big integers
    {"$t": "float", "v": "nan" | "inf" | "-inf"}         non-finite floats
    {"$t": "complex", "re": "1.0", "im": "-2.0"}
    {"$t": "list" | "tuple", "v": [...]}
    {"$t": "dict", "v": [[key, value], ...]}
    {"$t": "tensor", "dtype": "float64", "shape": [3, 4], "data": "<base64, little-endian, C order>"}
    {"$t": "ndarray" | "npscalar", "dtype": "<f8", "shape": [...], "data": "<base64>"}

:func:`decode` accepts nothing else: an untagged JSON object, an unknown tag, a dtype outside the
list, a size that disagrees with the data, more than ``max_depth`` levels or ``max_bytes`` bytes all
raise :class:`WireError`. Every value it returns is built here from the decoded bytes
(``type(x) is torch.Tensor``, a real ``str``, ...), so no object of the student's reaches the checker.
"""
from __future__ import annotations

import base64
import binascii
import json
import math

import numpy as np

__all__ = ["WireError", "decode", "decode_text"]

_TORCH_DTYPES = ("float64", "float32", "float16", "bfloat16", "complex128", "complex64", "int64", "int32",
                 "int16", "int8", "uint8", "bool")
_NUMPY_KINDS = "biufc"


class WireError(ValueError):
    """The kernel's answer is not plain data in the wire format."""


def decode_text(text: str, max_bytes: int = 64 << 20, max_depth: int = 32):
    """Parse JSON text (at most ``2 * max_bytes`` characters) and :func:`decode` it."""
    if not isinstance(text, str):
        raise WireError(f"expected JSON text, got {type(text).__name__}")
    if len(text) > 2 * max_bytes + 4096:
        raise WireError(f"the answer is larger than {max_bytes >> 20} MB")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as err:
        raise WireError(f"the answer is not valid JSON ({err})") from None
    return decode(data, max_bytes=max_bytes, max_depth=max_depth)


def _reject_constant(name):
    raise WireError(f"bare {name} in the answer")


def decode(data, max_bytes: int = 64 << 20, max_depth: int = 32):
    """A JSON-decoded answer as trusted Python/numpy/torch objects (see the module docstring)."""
    budget = [max_bytes]
    return _decode(data, 0, max_depth, budget)


def _float(text) -> float:
    if type(text) is not str or len(text) > 64:
        raise WireError("a float must be given as a short string")
    try:
        return float(text)
    except ValueError:
        raise WireError(f"not a float: {text[:20]!r}") from None


def _spend(budget, n):
    budget[0] -= n
    if budget[0] < 0:
        raise WireError("the answer is too large")


def _decode(x, depth, max_depth, budget):
    if depth > max_depth:
        raise WireError("the answer is nested too deeply")
    t = type(x)
    _spend(budget, 8)
    if x is None or t is bool:
        return x
    if t is str:
        _spend(budget, len(x))
        return str(x)
    if t is int:
        return int(x)
    if t is float:
        if not math.isfinite(x):
            raise WireError("non-finite float outside a tag")
        return float(x)
    if t is list:
        raise WireError("untagged list")
    if t is not dict:
        raise WireError(f"unexpected JSON type {t.__name__}")
    tag = x.get("$t")
    if tag == "int":
        v = x.get("v")
        if type(v) is not str or len(v) > 4300 or not v.lstrip("-").isdigit():
            raise WireError("bad big integer")
        return int(v)
    if tag == "float":
        return _float(x.get("v"))
    if tag == "complex":
        return complex(_float(x.get("re")), _float(x.get("im")))
    if tag in ("list", "tuple"):
        items = x.get("v")
        if type(items) is not list:
            raise WireError(f"bad {tag}")
        out = [_decode(v, depth + 1, max_depth, budget) for v in items]
        return out if tag == "list" else tuple(out)
    if tag == "dict":
        items = x.get("v")
        if type(items) is not list or not all(type(kv) is list and len(kv) == 2 for kv in items):
            raise WireError("bad dict")
        out = {}
        for k, v in items:
            key = _decode(k, depth + 1, max_depth, budget)
            try:
                hash(key)
            except TypeError:
                raise WireError("unhashable dict key") from None
            out[key] = _decode(v, depth + 1, max_depth, budget)
        return out
    if tag == "tensor":
        return _tensor(x, budget)
    if tag in ("ndarray", "npscalar"):
        arr = _ndarray(x, budget)
        return arr if tag == "ndarray" else arr.reshape(())[()]
    raise WireError(f"unknown tag {str(tag)[:20]!r}")


def _shape_and_bytes(x, budget):
    shape, data = x.get("shape"), x.get("data")
    if type(shape) is not list or len(shape) > 32 or not all(type(s) is int and 0 <= s < 1 << 40 for s in shape):
        raise WireError("bad shape")
    if type(data) is not str:
        raise WireError("bad data")
    _spend(budget, len(data) * 3 // 4)
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise WireError("bad base64 data") from None
    return tuple(shape), raw


def _tensor(x, budget):
    import torch

    name = x.get("dtype")
    if name not in _TORCH_DTYPES:
        raise WireError(f"tensor dtype {str(name)[:20]!r} is not allowed")
    dtype = getattr(torch, name)
    shape, raw = _shape_and_bytes(x, budget)
    numel = math.prod(shape)
    itemsize = torch.empty((), dtype=dtype).element_size()
    if numel * itemsize != len(raw):
        raise WireError(f"tensor of shape {shape} and dtype {name} needs {numel * itemsize} bytes, got {len(raw)}")
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype)
    return flat.reshape(shape).clone()


def _ndarray(x, budget):
    try:
        dtype = np.dtype(x.get("dtype"))
    except (TypeError, ValueError):
        raise WireError("bad array dtype") from None
    if dtype.kind not in _NUMPY_KINDS or dtype.itemsize > 16 or dtype.byteorder not in ("<", "|", "="):
        raise WireError(f"array dtype {dtype} is not allowed")
    shape, raw = _shape_and_bytes(x, budget)
    if math.prod(shape) * dtype.itemsize != len(raw):
        raise WireError(f"array of shape {shape} and dtype {dtype} does not match its data")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)
