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
import sys
import textwrap
import types
from typing import Any, Callable, Iterable, Sequence

import numpy as np

__all__ = ["assert_close", "assert_shape", "assert_not_calling", "assert_choice",
           "assert_within_standard_errors"]


_PY_NUMBERS = (bool, int, float, complex)
ACCEPTED = ("a torch.Tensor, a numpy array, a Python number (bool, int, float, complex) or a numpy scalar, "
            "or a (nested) list/tuple of numbers")


def _exact_numeric(value: Any, what: str, role: str, depth: int = 0):
    """``value`` as something ``np.asarray`` reads without calling the value's own code: only exact
    types are accepted (subclasses and array-likes could answer comparisons with anything)."""
    t = type(value)
    torch = sys.modules.get("torch")
    if torch is not None and (t is torch.Tensor or t is torch.nn.Parameter):
        value = value.detach().cpu()
        return value.resolve_conj().numpy() if value.is_complex() else value.numpy()
    if t is np.ndarray or t in _PY_NUMBERS:
        return value
    if isinstance(value, np.generic) and t.__module__ == "numpy":
        return value
    if (t is list or t is tuple) and depth < 32:
        return [_exact_numeric(v, what, role, depth + 1) for v in value]
    raise AssertionError(
        f"{what}: the {role} must be {ACCEPTED}; got an object of type {t.__module__}.{t.__qualname__}. "
        f"Subclasses and array-like objects are not accepted: return a plain tensor or array.")


def _to_numpy(value: Any, what: str, role: str) -> np.ndarray:
    """A number, list, numpy array or torch tensor (any device; exact types only) -> float64/complex array."""
    if value is None:
        raise AssertionError(
            f"{what}: the {role} is None. Did the function forget to `return` its result?")
    plain = _exact_numeric(value, what, role)
    try:
        arr = np.asarray(plain)
    except Exception as err:  # ragged lists and the like
        raise AssertionError(f"{what}: could not read the {role} as an array of numbers ({err}).") from None
    if type(arr) is not np.ndarray or arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                                                   or arr.dtype == bool):
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
    got = tuple(int(n) for n in np.shape(_exact_numeric(actual, what, "result")))
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
    if type(answer) is not str:
        raise AssertionError(f"{what}: the answer must be a string (str), e.g. {opts[0]!r}; got an object of type "
                             f"{type(answer).__module__}.{type(answer).__qualname__}.")
    if str.upper(str.strip(answer)) not in norm:
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


def _unwrap(obj):
    """The function behind decorators, bound methods and ``functools.partial``."""
    import functools

    for _ in range(16):
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif isinstance(obj, types.MethodType):
            obj = obj.__func__
        elif isinstance(obj, types.FunctionType) and "__wrapped__" in vars(obj):
            obj = vars(obj)["__wrapped__"]
        else:
            return obj
    return obj


def _codes(code: types.CodeType):
    stack = [code]
    while stack:
        co = stack.pop()
        yield co
        stack.extend(c for c in co.co_consts if isinstance(c, types.CodeType))


def _reached(func: Callable) -> list[tuple[object, str, Callable]]:
    """(object, how it is named, the function that names it) for what ``func`` can reach without
    running: its globals, closure cells and defaults, the attributes its code reads from the modules
    and classes it reaches, and, recursively, the helper functions defined in the same module."""
    out, todo, seen = [], [func], set()
    module = getattr(_unwrap(func), "__module__", None)
    builtins_ns = vars(__import__("builtins"))
    while todo:
        f = _unwrap(todo.pop())
        if id(f) in seen or not isinstance(f, types.FunctionType):
            continue
        seen.add(id(f))
        names = set()
        for co in _codes(f.__code__):
            names.update(co.co_names)
        found = []
        for name in names:
            if name in f.__globals__:
                found.append((f.__globals__[name], name))
            elif name in builtins_ns:
                found.append((builtins_ns[name], name))
        for cell, name in zip(f.__closure__ or (), f.__code__.co_freevars):
            try:
                found.append((cell.cell_contents, name))
            except ValueError:  # an empty cell
                pass
        for value in list(f.__defaults__ or ()) + list((f.__kwdefaults__ or {}).values()):
            found.append((value, "a default argument"))
        containers = [(v, n) for v, n in found if isinstance(v, (types.ModuleType, type))]
        while containers:  # attributes read from modules/classes: `nk.regression.krr`
            box, label = containers.pop()
            if id(box) in seen:
                continue
            seen.add(id(box))
            for name in names:
                value = vars(box).get(name) if isinstance(box, types.ModuleType) else inspect.getattr_static(box, name, None)
                if value is not None:
                    found.append((value, f"{label}.{name}"))
                    if isinstance(value, (types.ModuleType, type)):
                        containers.append((value, f"{label}.{name}"))
        out += [(v, n, f) for v, n in found]
        for value, _ in found:
            target = _unwrap(value)
            if isinstance(target, types.FunctionType) and target.__module__ == module:
                todo.append(target)
            elif isinstance(value, type) and value.__module__ == module:
                todo += [v for v in vars(value).values() if isinstance(_unwrap(v), types.FunctionType)]
    return out


def _source(f) -> str | None:
    try:
        return textwrap.dedent(inspect.getsource(f))
    except (OSError, TypeError):
        return None


def _source_problems(f: Callable, targets, context: list[str]) -> list[str]:
    from ntklib.grading.shortcuts import find_shortcuts

    src = _source(f)
    return [] if src is None else find_shortcuts([(f"`{f.__name__}`", src, None)], targets, context=context)


def assert_not_calling(func: Callable, forbidden_names: Iterable[str | Callable], what: str | None = None) -> None:
    """Check that ``func`` does not use any of ``forbidden_names`` (so an exercise is not solved by
    calling the library function it asks the student to write).

    ``forbidden_names`` are names (``"empirical_ntk"``, ``"KernelRidge"``, ``"inv"``, a module such as
    ``"regression"``) or objects; names are resolved to the objects they denote in the loaded
    numerical libraries (ntklib, torch, numpy, scipy, scikit-learn). ``func`` fails when

    * a forbidden name appears in its code (a name, an attribute, an import, ``getattr(nk, "...")``);
    * it *reaches* a forbidden object, whatever it is bound to: through its globals (``inv_ =
      np.linalg.inv``), closures, default arguments, the attributes it reads from modules
      (``nk.regression.kernel_regression`` when ``"regression"`` is forbidden), or the helper
      functions of the same notebook/module it calls (searched recursively);
    * it reaches a private (underscore) part of ntklib, or uses dynamic access that could hide a
      call (``eval``/``exec``, ``getattr`` with a computed name, ``importlib``, ``globals()``, ...).

    In a student's kernel this is immediate feedback. At grading time the checker calls it on a
    proxy of the student's function (:class:`ntklib.grading.checker.StudentFunction`), and the check
    becomes a static reading of every cell the student wrote (:mod:`ntklib.grading.shortcuts`).

    >>> def mine(x): return x * 2
    >>> assert_not_calling(mine, ["empirical_ntk"])
    """
    checker = sys.modules.get("ntklib.grading.checker")
    if checker is not None and isinstance(func, checker.StudentFunction):
        return func.assert_not_calling(forbidden_names, what)
    if not callable(func):
        raise AssertionError(f"{what or 'your answer'}: expected a function, got {type(func).__name__}.")
    from ntklib.grading.shortcuts import forbidden_targets, is_forbidden_object

    label = what or f"`{getattr(func, '__name__', 'your function')}`"
    targets = forbidden_targets(forbidden_names)
    root = _unwrap(func)

    def fail(detail, f):
        where = "" if f is root else f" (through the helper `{getattr(f, '__name__', '?')}`)"
        raise AssertionError(f"{label} uses {detail}{where}. The exercise asks you to write this computation "
                             f"yourself: use the building blocks named in the exercise instead.")

    helpers, seen = [root], {id(root)}
    for value, _, _ in _reached(func):
        f = _unwrap(value)
        if isinstance(f, types.FunctionType) and f.__module__ == getattr(root, "__module__", None) and id(f) not in seen:
            seen.add(id(f))
            helpers.append(f)
    for f in helpers:
        names, strings = _names_used(f)
        hit = sorted((names | {x for x in strings if x.isidentifier()}) & targets.names)
        # a name of the student's own code (a helper they wrote, e.g. their `gp_posterior`) is theirs
        hit = [h for h in hit if not (isinstance(_unwrap(f.__globals__.get(h)), types.FunctionType)
                                      and _unwrap(f.__globals__.get(h)).__module__ == root.__module__)]
        if hit:
            fail(", ".join(repr(h) for h in hit), f)
    for value, how, f in _reached(func):
        why = is_forbidden_object(value, targets)
        if why:
            fail(f"{how!r} ({why})", f)
    context = [src for src in map(_source, helpers) if src is not None]  # the helpers' own definitions
    for f in helpers:
        problems = _source_problems(f, targets, context)
        if problems:
            fail(problems[0], f)


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
