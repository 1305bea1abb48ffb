r"""Comparison helpers shared by the test suite and by the notebooks' grading cells.

Every helper raises ``AssertionError`` (so nbgrader counts the cell as failed) with a message
written for a student: *what* was checked, what was expected, what came back, and, where it
can tell, a hint about the usual mistake (a transposed matrix, a missing ``return``, a
``(n, 1)`` column where a flat ``(n,)`` vector was expected).

* :func:`assert_close`       -- numbers/arrays/tensors equal up to ``|a - e| <= atol + rtol |e|``.
* :func:`assert_shape`       -- the shape of an array/tensor, with ``None`` as a wildcard.
* :func:`assert_not_calling` -- a student's function does not simply call a library function
  (e.g. ``ntklib.empirical_ntk``) that the exercise asks them to write themselves.
* :func:`assert_choice`      -- a multiple-choice answer variable holds one of the offered options.

Used by the grading cells of ``solutions/*/*.ipynb`` and by ``tests/``; tested in
``tests/library/test_testing.py``; how grading works: ``docs/instructors.md``.
"""
from __future__ import annotations

import ast
import inspect
import math
import textwrap
import types
from typing import Any, Callable, Iterable, Sequence

import numpy as np

__all__ = ["assert_close", "assert_shape", "assert_not_calling", "assert_choice",
           "assert_within_standard_errors"]


def _to_numpy(value: Any, what: str, role: str) -> np.ndarray:
    """Anything numeric (python number, list, numpy array, torch tensor on any device) -> float64/complex array."""
    if value is None:
        raise AssertionError(
            f"{what}: the {role} is None. Did the function forget to `return` its result?")
    try:  # torch tensors, without importing torch when it is not needed
        import torch

        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            value = value.numpy() if not value.is_complex() else value.resolve_conj().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency of ntklib
        pass
    try:
        arr = np.asarray(value)
    except Exception as err:  # ragged lists and the like
        raise AssertionError(f"{what}: could not read the {role} as an array of numbers ({err}).") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise AssertionError(
            f"{what}: the {role} should hold numbers; got {type(value).__name__} of dtype {arr.dtype}.")
    return arr.astype(np.complex128 if np.iscomplexobj(arr) else np.float64)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def assert_shape(actual: Any, shape: Sequence[int | None], what: str = "the result") -> None:
    """Check that ``actual`` (array, tensor, or anything with ``.shape``) has shape ``shape``.

    ``shape`` is a tuple of ints; ``None`` entries match any size, e.g. ``(None, 3)``.

    >>> assert_shape(np.zeros((4, 2)), (4, 2), "the Jacobian")
    >>> assert_shape(np.zeros((4, 2)), (4, None), "the Jacobian")
    """
    if actual is None:
        raise AssertionError(f"{what}: got None. Did the function forget to `return` its result?")
    got = tuple(getattr(actual, "shape", np.shape(actual)))
    want = tuple(shape)
    ok = len(got) == len(want) and all(w is None or int(g) == int(w) for g, w in zip(got, want))
    if ok:
        return
    want_txt = "(" + ", ".join("any" if w is None else str(w) for w in want) + ("," if len(want) == 1 else "") + ")"
    hint = ""
    if len(got) == len(want) == 2 and all(w is not None for w in want) and got == want[::-1]:
        hint = " It looks transposed: check the order of the axes (e.g. use .T or swap the arguments)."
    elif len(got) == len(want) + 1 and got[-1] == 1:
        hint = " It has an extra trailing axis of size 1: flatten it (e.g. x[:, 0] or x.reshape(-1))."
    elif len(got) + 1 == len(want) and want[-1] == 1:
        hint = " It misses a trailing axis of size 1 (e.g. x[:, None])."
    elif math.prod(got) == math.prod(w or 1 for w in want) and None not in want:
        hint = " It has the right number of entries: a reshape or a transpose is probably missing."
    raise AssertionError(f"{what}: expected shape {want_txt}, got {got}.{hint}")


def assert_close(actual: Any, expected: Any, what: str = "the result", rtol: float = 1e-7,
                 atol: float = 1e-10) -> None:
    r"""Check ``|actual - expected| <= atol + rtol * |expected|`` elementwise (numpy's ``allclose`` rule).

    ``actual`` and ``expected`` may be python numbers, lists, numpy arrays or torch tensors (any
    device, detached automatically); they are compared in float64. The shapes must agree
    exactly (no broadcasting: a ``(n, 1)`` answer is not a ``(n,)`` answer), both must be finite
    where ``expected`` is, and the failure message names ``what`` was compared, the largest
    violation and where it is, with hints for the usual mistakes (transposed, sign flipped, off by
    a constant factor).

    Parameters
    ----------
    actual : the student's (or the code under test's) value.
    expected : the independent truth (a closed form, a second implementation, ...).
    what : words naming the quantity, e.g. ``"the posterior mean at x_test"``.
    rtol, atol : relative and absolute tolerance.
    """
    if rtol < 0 or atol < 0:
        raise ValueError(f"rtol and atol must be >= 0; got rtol={rtol!r}, atol={atol!r}.")
    a = _to_numpy(actual, what, "result")
    e = _to_numpy(expected, what, "expected value")
    if a.shape != e.shape:
        if a.size == e.size and a.size > 0 and np.allclose(a.reshape(e.shape), e, rtol=rtol, atol=atol):
            raise AssertionError(
                f"{what}: the numbers are right but the shape is {a.shape}, expected {e.shape}. "
                f"Reshape the result (e.g. .reshape({e.shape}) or drop/add an axis of size 1).")
        assert_shape(a, e.shape, what)  # raises with a hint
    finite_e = np.isfinite(e)
    bad = finite_e & ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: got {int(bad.sum())} NaN or infinite entries (first at index {idx}) where finite "
            f"values are expected. Look for a division by zero, a log/sqrt of a negative number, "
            f"or an unstable inverse (use a Cholesky solve instead of inv).")
    if not np.array_equal(np.isfinite(a), finite_e) or not np.array_equal(a[~finite_e], e[~finite_e], equal_nan=True):
        raise AssertionError(f"{what}: infinite/NaN entries do not match the expected ones.")
    if a.size == 0:
        return
    diff = np.abs(a - e)
    allowed = atol + rtol * np.abs(e)
    excess = np.where(finite_e, diff - allowed, -np.inf)
    if not (excess > 0).any():
        return
    n_bad = int((excess > 0).sum())
    k = np.unravel_index(int(np.argmax(excess)), e.shape) if e.ndim else ()
    loc = f" at index {tuple(int(i) for i in k)}" if e.ndim else ""
    msg = (f"{what}: {n_bad} of {e.size} entries differ from the expected values. Largest violation{loc}: "
           f"got {_fmt(complex(a[k]) if np.iscomplexobj(a) else float(a[k]))}, expected "
           f"{_fmt(complex(e[k]) if np.iscomplexobj(e) else float(e[k]))} "
           f"(difference {_fmt(float(diff[k]))}, allowed {_fmt(float(allowed[k]))}).")
    hints = []
    if e.ndim == 2 and e.shape[0] == e.shape[1] and np.allclose(a, e.T, rtol=rtol, atol=atol):
        hints.append("The result equals the transpose of the expected matrix: swap the roles of the two inputs.")
    if np.allclose(-a, e, rtol=rtol, atol=atol) and np.abs(e).max() > atol:
        hints.append("The result has the opposite sign everywhere.")
    else:
        mask = np.abs(e) > max(atol, 1e-12)
        if mask.any() and np.isrealobj(a) and np.isrealobj(e):
            ratio = a[mask] / e[mask]
            r0 = float(np.median(ratio))
            if np.isfinite(r0) and abs(r0 - 1) > 1e-3 and r0 != 0 and np.allclose(a, r0 * e, rtol=max(rtol, 1e-6),
                                                                                   atol=atol):
                hints.append(f"The result is the expected value times {_fmt(r0)} everywhere: "
                             f"look for a missing or extra constant factor (a 1/2, a 1/n, a square root).")
    if hints:
        msg += " Hint: " + " ".join(hints)
    raise AssertionError(msg)


def assert_choice(answer: Any, options: Iterable[Any], what: str = "your answer") -> None:
    """Check that a multiple-choice answer variable holds one of ``options`` (strings compared
    case- and whitespace-insensitively). This checks the *form* of the answer, not whether it
    is right: grading cells compare with the right option in a hidden test.

    >>> assert_choice("b", ["A", "B", "C"], "ANSWER_Q1")
    """
    opts = list(options)
    norm = [str(o).strip().upper() for o in opts]
    if answer is None or answer is Ellipsis:
        raise AssertionError(f"{what}: set it to one of {opts} (it is still {answer!r}).")
    if str(answer).strip().upper() not in norm:
        raise AssertionError(f"{what}: expected one of {opts}, got {answer!r}.")


def _names_used(func: Callable) -> tuple[set[str], set[str]]:
    """(names, strings): every global/attribute/imported name a function's code touches, and its string constants.

    Read from the source (AST) when it is available -- which includes functions defined in
    notebook cells -- and from the bytecode otherwise; nested functions and lambdas are included.
    """
    names: set[str] = set()
    strings: set[str] = set()
    try:
        src = textwrap.dedent(inspect.getsource(func))
        tree = ast.parse(src)
    except (OSError, TypeError, SyntaxError, IndentationError):
        tree = None
    if tree is not None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.alias):
                names.update(node.name.split("."))
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.update(node.module.split("."))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.add(node.value)
    code = getattr(func, "__code__", None)
    stack = [code] if code is not None else []
    while stack:  # the bytecode is always there, even when the source is not
        co = stack.pop()
        names.update(co.co_names)
        for const in co.co_consts:
            if isinstance(const, types.CodeType):
                stack.append(const)
            elif isinstance(const, str):
                strings.add(const)
    return names, strings


def assert_not_calling(func: Callable, forbidden_names: Iterable[str | Callable], what: str | None = None) -> None:
    """Check that ``func`` does not use any of ``forbidden_names`` (so an exercise is not solved by
    calling the library function it asks the student to write).

    ``forbidden_names`` are names (``"empirical_ntk"``, ``"KernelRidge"``, ``"cho_solve"``) or the
    functions themselves. A name counts as used when it appears in ``func`` as a global or
    local name, an attribute (``nk.empirical_ntk``), an imported name, or a string constant
    (``getattr(nk, "empirical_ntk")``). Helper functions that ``func`` calls and that were
    defined in the same module/notebook are searched too, recursively.

    This is a deterrent for honest mistakes, not a sandbox: a determined student can hide a
    call. Grading cells therefore also compare the result with an independent truth.

    >>> def mine(x): return x * 2
    >>> assert_not_calling(mine, ["empirical_ntk"])
    """
    if not callable(func):
        raise AssertionError(f"{what or 'your answer'}: expected a function, got {type(func).__name__}.")
    label = what or f"`{getattr(func, '__name__', 'your function')}`"
    forbidden = {f if isinstance(f, str) else getattr(f, "__name__", str(f)) for f in forbidden_names}
    seen: set[int] = set()
    todo = [func]
    while todo:
        f = inspect.unwrap(todo.pop())
        if id(f) in seen:
            continue
        seen.add(id(f))
        names, strings = _names_used(f)
        hit = sorted((names | strings) & forbidden)
        if hit:
            where = "" if f is func else f" (through the helper `{f.__name__}`)"
            raise AssertionError(
                f"{label} uses {', '.join(repr(h) for h in hit)}{where}. The exercise asks you to write this "
                f"computation yourself: use the building blocks named in the exercise instead.")
        module = getattr(f, "__module__", None)
        gl = getattr(f, "__globals__", {})
        for name in names:
            g = gl.get(name)
            if isinstance(g, types.FunctionType) and g.__module__ == module and id(g) not in seen:
                todo.append(g)


def assert_within_standard_errors(actual: Any, mc_mean: Any, mc_sem: Any, what: str = "the result",
                                  n_sigma: float = 5.0, atol: float = 1e-10, rtol: float = 0.0) -> None:
    r"""Check an exact answer against a Monte Carlo estimate: ``|actual - mean| <= n_sigma * sem + atol + rtol |mean|``.

    ``mc_mean`` and ``mc_sem`` are the entrywise mean and standard error of the mean of a Monte
    Carlo estimate (e.g. :func:`ntklib.monte_carlo_kernel` over seeds of finite networks); ``rtol``
    allows for a known bias of the estimator (e.g. the :math:`O(1/n)` finite-width bias of a deep
    network's NTK). With fixed seeds the check is deterministic; with ``n_sigma = 5`` a correct
    answer fails by chance with probability below :math:`10^{-6}` per entry. The failure message
    gives the worst entry's z-score and, where it can tell, the constant factor by which the
    answer is off.
    """
    if n_sigma <= 0 or atol < 0 or rtol < 0:
        raise ValueError(f"n_sigma must be > 0 and atol, rtol >= 0; got {n_sigma!r}, {atol!r}, {rtol!r}.")
    a = _to_numpy(actual, what, "result")
    m = _to_numpy(mc_mean, what, "Monte Carlo mean")
    s = _to_numpy(mc_sem, what, "Monte Carlo standard error")
    if a.shape != m.shape:
        assert_shape(a, m.shape, what)
    if not np.all(np.isfinite(a)):
        raise AssertionError(f"{what}: the result has NaN or infinite entries; expected finite values.")
    diff = np.abs(a - m)
    allowed = n_sigma * s + atol + rtol * np.abs(m)
    if (diff <= allowed).all():
        return
    z = diff / np.maximum(s, 1e-300)
    k = np.unravel_index(int(np.argmax(diff - allowed)), m.shape) if m.ndim else ()
    loc = f" at index {tuple(int(i) for i in k)}" if m.ndim else ""
    msg = (f"{what}: {int((diff > allowed).sum())} of {m.size} entries are outside the Monte Carlo error bars. "
           f"Worst{loc}: got {_fmt(float(a[k]))}, the simulation of finite networks gives {_fmt(float(m[k]))} "
           f"+- {_fmt(float(s[k]))} (standard error; {_fmt(float(z[k]))} standard errors away, allowed {n_sigma:g}).")
    mask = np.abs(m) > 10 * np.maximum(s, atol)
    if mask.any():
        ratio = a[mask] / m[mask]
        r0 = float(np.median(ratio))
        if np.isfinite(r0) and r0 != 0 and abs(r0 - 1) > 0.05 and np.all(np.abs(ratio / r0 - 1) < 0.05):
            msg += (f" Hint: the result is about {_fmt(r0)} times the simulation everywhere: look for a missing or "
                    f"extra constant factor (a weight variance, a 1/d, a depth factor).")
    raise AssertionError(msg)
