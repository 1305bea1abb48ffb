"""The grading agent: the few lines that run *inside the student's kernel* and answer the checker.

The executor sends this file's source to the kernel once after it starts (before any student
code), as a module named ``_ntk_grading_agent`` in ``sys.modules``. Each request from the checker
is one silent ``execute_request`` whose code is ``<module>.handle("<base64 pickle>")``; the reply is
read back as the user expression ``<module>.reply`` (a JSON string). The kernel is the untrusted
side: it *receives* pickles (the arguments of the checker's calls) and *sends* plain data only --
the JSON format of :mod:`ntklib.grading.wire`, which the checker decodes into fresh trusted objects.
Whatever a student does to this module (replace it, rig the encoder) can only change what their
functions appear to return, never a comparison: comparisons run in the checker.

Requests (dicts): ``{"op": "describe", "names": [...]}``, ``{"op": "call", "name": ..., "args": (...),
"kwargs": {...}}``, ``{"op": "probe"}``; every reply is ``{"ok": bool, ...}``.
"""
import base64 as _base64
import builtins as _builtins
import json as _json
import math as _math
import pickle as _pickle
import sys as _sys

MAX_BYTES = 64 << 20
MAX_DEPTH = 32
MAX_ITEMS = 1 << 20
reply = ""
_TORCH_DTYPES = ("float64", "float32", "float16", "bfloat16", "complex128", "complex64", "int64", "int32",
                 "int16", "int8", "uint8", "bool")
_NUMPY_KINDS = "biufc"


class Unsupported(Exception):
    pass


def _user_ns():
    ip = getattr(_builtins, "get_ipython", None)
    if ip is None:
        return _sys.modules["__main__"].__dict__
    return ip().user_ns


class _Encoder:
    def __init__(self):
        self.nbytes = 0
        self.items = 0

    def _count(self, n):
        self.nbytes += n
        self.items += 1
        if self.nbytes > MAX_BYTES:
            raise Unsupported(f"the result is larger than {MAX_BYTES >> 20} MB")
        if self.items > MAX_ITEMS:
            raise Unsupported(f"the result has more than {MAX_ITEMS} items")

    def encode(self, x, depth=0):
        if depth > MAX_DEPTH:
            raise Unsupported("the result is nested too deeply")
        t = type(x)
        self._count(8)
        if x is None or t is bool or t is str:
            if t is str:
                self._count(len(x))
            return x
        if t is int:
            return {"$t": "int", "v": str(x)} if abs(x) >= 1 << 53 else x
        if t is float:
            return x if _math.isfinite(x) else {"$t": "float", "v": repr(x)}
        if t is complex:
            return {"$t": "complex", "re": repr(x.real), "im": repr(x.imag)}
        if t is list or t is tuple:
            return {"$t": t.__name__, "v": [self.encode(v, depth + 1) for v in x]}
        if t is dict:
            return {"$t": "dict", "v": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in x.items()]}
        torch = _sys.modules.get("torch")
        if torch is not None and t is torch.Size:
            return {"$t": "tuple", "v": [int(v) for v in x]}
        if torch is not None and isinstance(x, torch.Tensor):
            return self._tensor(torch, x)
        numpy = _sys.modules.get("numpy")
        if numpy is not None and t is numpy.ndarray:
            return self._ndarray(numpy, x, "ndarray")
        if numpy is not None and isinstance(x, numpy.generic) and t.__module__ == "numpy":
            return self._ndarray(numpy, numpy.asarray(x), "npscalar")
        raise Unsupported(f"an object of type {t.__module__}.{t.__qualname__}")

    def _tensor(self, torch, x):
        x = x.detach()
        if x.layout != torch.strided:
            x = x.to_dense()
        x = x.cpu().resolve_conj().resolve_neg().contiguous()
        name = str(x.dtype).replace("torch.", "")
        if name not in _TORCH_DTYPES:
            raise Unsupported(f"a tensor of dtype {x.dtype}")
        nbytes = x.numel() * x.element_size()
        self._count(nbytes)
        raw = x.reshape(-1).view(torch.uint8).numpy().tobytes() if nbytes else b""
        if _sys.byteorder != "little":  # pragma: no cover
            raise Unsupported("a big-endian machine")
        return {"$t": "tensor", "dtype": name, "shape": [int(s) for s in x.shape],
                "data": _base64.b64encode(raw).decode("ascii")}

    def _ndarray(self, numpy, x, tag):
        if x.dtype.kind not in _NUMPY_KINDS or x.dtype.itemsize > 16:
            raise Unsupported(f"an array of dtype {x.dtype}")
        x = numpy.ascontiguousarray(x).astype(x.dtype.newbyteorder("<"), copy=False)
        self._count(x.nbytes)
        return {"$t": tag, "dtype": x.dtype.str, "shape": [int(s) for s in x.shape],
                "data": _base64.b64encode(x.tobytes()).decode("ascii")}


def encode(x):
    """``x`` as JSON text in the wire format (raises :class:`Unsupported` for anything else)."""
    return _json.dumps(_Encoder().encode(x), allow_nan=False)


def _error(exc):
    try:
        message = str(exc)
    except BaseException:  # noqa: BLE001 - a rigged __str__
        message = "<unprintable>"
    return {"ok": False, "etype": type(exc).__name__, "message": message[:4000]}


def _describe(names):
    ns = _user_ns()
    out = {}
    for name in names:
        if name not in ns:
            out[name] = {"kind": "missing"}
            continue
        value = ns[name]
        if callable(value) and not isinstance(value, type):
            out[name] = {"kind": "function"}
            continue
        try:
            out[name] = {"kind": "value", "value": _json.loads(encode(value))}
        except Unsupported as err:
            out[name] = {"kind": "unreadable", "why": str(err)}
        except BaseException as err:  # noqa: BLE001
            out[name] = {"kind": "unreadable", "why": f"{type(err).__name__}: {err}"[:2000]}
    return {"ok": True, "names": out}


def _probe():
    """What a grader would call tampering, as far as this kernel tells (a student can lie here:
    the executor also checks that the kernel answers at all)."""
    found = []
    ip = getattr(_builtins, "get_ipython", None)
    ip = ip() if ip is not None else None
    if ip is not None:
        if getattr(ip, "ast_transformers", None):
            found.append("an AST transformer rewrites the code the kernel runs")
        for attr in ("run_cell", "run_ast_nodes", "run_code", "run_cell_async", "transform_cell"):
            if attr in vars(ip):
                found.append(f"IPython's {attr} was replaced")
        kernel = getattr(ip, "kernel", None)
        if kernel is not None:
            for attr in ("do_execute", "execute_request", "dispatch_shell", "process_one"):
                if attr in vars(kernel):
                    found.append(f"the kernel's {attr} was replaced")
    if _sys.gettrace() is not None or _sys.getprofile() is not None:
        found.append("a trace or profile function is installed")
    return {"ok": True, "tampering": found}


def handle(request_b64):
    """Serve one request; the reply (JSON text) is left in :data:`reply`."""
    global reply
    reply = ""
    try:
        request = _pickle.loads(_base64.b64decode(request_b64))
        op = request["op"]
        if op == "describe":
            out = _describe(request["names"])
        elif op == "probe":
            out = _probe()
        elif op == "call":
            fn = _user_ns()[request["name"]]
            try:
                result = fn(*request["args"], **request["kwargs"])
            except BaseException as err:  # noqa: BLE001 - the student's exception, reported
                out = _error(err)
            else:
                try:
                    out = {"ok": True, "value": _json.loads(encode(result))}
                except Unsupported as err:
                    out = {"ok": False, "etype": "Unsupported", "message": f"it returned {err}"}
        else:
            out = {"ok": False, "etype": "BadRequest", "message": repr(op)}
    except BaseException as err:  # noqa: BLE001
        out = _error(err)
    try:
        reply = _json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as err:
        reply = _json.dumps(_error(err))
