"""The plain-data channel from the student's kernel to the checker (ntklib.grading.agent -> ntklib.grading.wire).

The kernel-side encoder and the checker-side decoder are tested against each other, and the decoder
alone against forged answers: it must hand the checker fresh objects of exact types, or refuse.
"""
import json
import math

import numpy as np
import pytest
import torch

from ntklib.grading import agent
from ntklib.grading.wire import WireError, decode, decode_text


def _roundtrip(x):
    return decode_text(agent.encode(x))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.complex128,
                                   torch.int64, torch.int8, torch.uint8, torch.bool])
def test_tensors_come_back_bit_exact_with_exact_type_dtype_and_shape(dtype):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(3, 4, generator=gen, dtype=torch.float64) * 5).to(dtype)
    y = _roundtrip(x)
    assert type(y) is torch.Tensor and y.dtype == dtype and y.shape == x.shape
    assert torch.equal(y, x)  # the same bytes, by construction of the format


def test_noncontiguous_conjugated_requires_grad_and_empty_tensors_are_materialized():
    x = torch.arange(12.0, dtype=torch.float64).reshape(3, 4).T  # (4, 3), not contiguous
    assert torch.equal(_roundtrip(x), x)
    z = torch.tensor([1 + 2j, 3 - 1j], dtype=torch.complex128).conj()
    assert torch.equal(_roundtrip(z), z.resolve_conj())
    w = torch.ones(2, dtype=torch.float64, requires_grad=True) * 3
    got = _roundtrip(w)
    assert not got.requires_grad and torch.equal(got, w.detach())
    assert _roundtrip(torch.empty(0, 5)).shape == (0, 5)


def test_numpy_python_and_nested_values_keep_their_types():
    value = {"a": (1, 2.5, -math.inf, float("nan"), 1 + 2j, True, None, "s", 10**30),
             3: [np.arange(4, dtype=np.int32), np.float32(1.5), np.zeros((2, 0))]}
    got = _roundtrip(value)
    a = got["a"]
    assert type(got) is dict and type(a) is tuple and a[:3] == (1, 2.5, -math.inf) and math.isnan(a[3])
    assert a[4:] == (1 + 2j, True, None, "s", 10**30) and type(a[7]) is str
    arr, scalar, empty = got[3]
    assert type(arr) is np.ndarray and arr.dtype == np.int32 and arr.tolist() == [0, 1, 2, 3]
    assert type(scalar) is np.float32 and scalar == np.float32(1.5)
    assert empty.shape == (2, 0)


class _Rigged(str):
    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


class _ArrayLike:
    def __array__(self, dtype=None, copy=None):
        return np.ones(3)


@pytest.mark.parametrize("value, what", [
    (_Rigged("A"), "_Rigged"), (_ArrayLike(), "_ArrayLike"), (np.array([object()]), "dtype object"),
    (lambda x: x, "function"), ({1, 2}, "set"), (b"bytes", "bytes"),
])
def test_the_kernel_side_refuses_anything_but_plain_data(value, what):
    with pytest.raises(agent.Unsupported, match=what):
        agent.encode(value)


def _tensor(**over):
    base = {"$t": "tensor", "dtype": "float64", "shape": [2], "data": "AAAAAAAA8D8AAAAAAADwPw=="}
    return {**base, **over}


@pytest.mark.parametrize("forged, match", [
    ({"x": 1}, "unknown tag"),
    ([1, 2], "untagged list"),
    (_tensor(dtype="object"), "not allowed"),
    (_tensor(shape=[3]), "needs 24 bytes"),
    (_tensor(shape=[-1]), "bad shape"),
    (_tensor(data="not base64!"), "base64"),
    ({"$t": "ndarray", "dtype": "|O", "shape": [1], "data": "AA=="}, "not allowed"),
    ({"$t": "ndarray", "dtype": "f8,f8", "shape": [1], "data": "AA=="}, "not allowed"),
    ({"$t": "float", "v": 1.0}, "short string"),
    ({"$t": "int", "v": "12a"}, "big integer"),
    ({"$t": "dict", "v": [[{"$t": "list", "v": []}, 1]]}, "unhashable"),
])
def test_the_decoder_refuses_forged_answers(forged, match):
    with pytest.raises(WireError, match=match):
        decode(forged)


def test_the_decoder_limits_depth_size_and_bare_constants():
    deep = 1
    for _ in range(40):
        deep = {"$t": "list", "v": [deep]}
    with pytest.raises(WireError, match="nested too deeply"):
        decode(deep)
    big = {"$t": "tensor", "dtype": "uint8", "shape": [2048], "data": "A" * 2732}
    with pytest.raises(WireError, match="too large"):
        decode(big, max_bytes=1024)
    with pytest.raises(WireError, match="bare NaN"):
        decode_text("NaN")
    with pytest.raises(WireError, match="larger than"):
        decode_text(json.dumps("x" * 10000), max_bytes=1024)


def test_decoded_tensors_do_not_share_memory_with_the_message():
    text = agent.encode(torch.zeros(3))
    a, b = decode_text(text), decode_text(text)
    a += 1
    assert torch.equal(b, torch.zeros(3))
