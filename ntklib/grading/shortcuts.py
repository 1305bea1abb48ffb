r"""Forbidden shortcuts, found statically in the code a student wrote.

:func:`find_shortcuts` reads source code (never runs it) and reports, with cell and line:

* **references to forbidden objects**: a name, an attribute, an imported name or a string constant
  equal to a forbidden name (``"inv"``, ``"KernelRidge"``); and any dotted path that resolves --
  through the notebook's imports and simple aliases (``import ntklib as nk``, ``R = nk.regression``,
  ``from numpy.linalg import inv as solve``) -- to a forbidden object, to anything defined in a
  forbidden module, or to a private (underscore) name of ntklib;
* **dynamic access that could hide one**: ``getattr``/``setattr``/``delattr`` with a computed
  name, ``eval``/``exec``/``compile``, ``__import__``, ``globals()``/``vars()``/``locals()``,
  ``__builtins__``, dunder attributes such as ``__dict__`` or ``__globals__`` (``__init__``,
  ``__name__`` and the like are fine), ``sys.modules``/``sys._getframe``,
  ``operator.attrgetter``/``methodcaller``, processes (``os.system``, ``subprocess``) and the modules
  ``importlib``, ``inspect``, ``ctypes``, ``pickle``, ``marshal``, ``gc`` and friends, and IPython's
  machinery through ``get_ipython()`` (the magics ``%time``, ``%timeit`` and ``%matplotlib`` are fine).

The checker applies it to every code cell of a submission whose source differs from the source
notebook's cell with the same id (or that the source does not have): what the student wrote.
Honest code for the course's exercises (torch, torch.func, numpy, math) never trips it.
"""
from __future__ import annotations

import ast
import re
import sys
import types
from dataclasses import dataclass, field
from typing import Iterable

__all__ = ["Forbidden", "forbidden_targets", "find_shortcuts", "resolve_path", "is_forbidden_object"]

SEARCH_ROOTS = ("ntklib", "torch", "numpy", "scipy", "sklearn")
ALLOWED_DUNDERS = {"__init__", "__call__", "__name__", "__qualname__", "__doc__", "__len__", "__iter__", "__next__",
                   "__enter__", "__exit__", "__repr__", "__str__", "__eq__", "__hash__", "__getitem__",
                   "__setitem__", "__contains__", "__add__", "__mul__", "__matmul__", "__neg__", "__version__",
                   "__post_init__", "__lt__", "__le__", "__gt__", "__ge__", "__ne__", "__bool__", "__float__",
                   "__int__", "__array__", "__torch_function__", "__class__", "__main__", "__file__"}
BANNED_MODULES = {"importlib", "inspect", "ctypes", "pickle", "marshal", "dill", "cloudpickle", "shelve", "runpy",
                  "code", "codeop", "gc", "builtins", "__builtin__", "subprocess", "multiprocessing", "pty",
                  "pickletools", "copyreg", "imp", "zipimport", "pkgutil", "cffi"}
BANNED_PATHS = ("sys.modules", "sys._getframe", "sys.settrace", "sys.setprofile", "sys.meta_path", "sys.path_hooks",
                "sys.path_importer_cache", "sys.addaudithook", "sys._current_frames", "sys.exc_info",
                "sys.exception", "sys.last_traceback", "operator.attrgetter", "operator.methodcaller",
                "os.system", "os.popen", "os.fork", "os.forkpty", "os.exec", "os.spawn", "os.posix_spawn",
                "types.FunctionType", "types.CodeType", "torch.ops", "torch.library", "numpy.ctypeslib")
BANNED_CALLS = {"eval", "exec", "compile", "__import__", "globals", "vars", "locals", "breakpoint"}
ALLOWED_MAGICS = {"time", "timeit", "matplotlib"}


@dataclass
class Forbidden:
    """Forbidden objects (by identity), names (tokens) and modules (everything defined in them)."""

    objects: dict = field(default_factory=dict)
    names: set = field(default_factory=set)
    modules: set = field(default_factory=set)


def _search_modules():
    for name, mod in list(sys.modules.items()):
        if isinstance(mod, types.ModuleType) and name.split(".")[0] in SEARCH_ROOTS:
            yield name, mod


def resolve_path(path: str):
    """The object a dotted path names, looked up without running code (modules' ``__dict__`` and
    ``sys.modules``; classes' ``__dict__``), among loaded modules only. None if it does not resolve."""
    parts = path.split(".")
    obj = sys.modules.get(parts[0])
    if obj is None:
        return None
    for i, part in enumerate(parts[1:], start=1):
        nxt = None
        if isinstance(obj, types.ModuleType):
            nxt = sys.modules.get(".".join(parts[:i + 1]))
            if nxt is None:
                nxt = vars(obj).get(part)
        elif isinstance(obj, type):
            for klass in obj.__mro__:
                if part in vars(klass):
                    nxt = vars(klass)[part]
                    break
        if nxt is None:
            return None
        obj = nxt
    return obj


def forbidden_targets(forbidden: Iterable) -> Forbidden:
    """Resolve names (``"inv"``, ``"regression"``, ``"ntklib.regression.krr"``) and objects to what they
    denote in the loaded numerical libraries (ntklib, torch, numpy, scipy, scikit-learn)."""
    out = Forbidden()
    items = list(forbidden)
    for item in items:
        if isinstance(item, str):
            out.names.add(item.split(".")[-1])
            if "." in item:
                obj = resolve_path(item)
                if obj is not None:
                    out.objects[id(obj)] = obj
                continue
            for _, mod in _search_modules():
                obj = vars(mod).get(item)
                if obj is not None and (callable(obj) or isinstance(obj, types.ModuleType)):
                    out.objects[id(obj)] = obj
        else:
            out.objects[id(item)] = item
            name = getattr(item, "__name__", None)
            if isinstance(name, str):
                out.names.add(name.split(".")[-1])
    for obj in list(out.objects.values()):
        if isinstance(obj, types.ModuleType):
            out.modules.add(obj.__name__)
    wanted = set(out.objects)
    for _, mod in _search_modules():  # every name under which a forbidden object is exported
        for key, value in list(vars(mod).items()):
            if id(value) in wanted and isinstance(key, str):
                out.names.add(key)
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_forbidden_object(obj, forbidden: Forbidden) -> str | None:
    """Why ``obj`` is forbidden (a short phrase), or None."""
    if id(obj) in forbidden.objects:
        return "a forbidden function"
    try:
        module = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
    except Exception:  # noqa: BLE001 - an object whose attribute lookup raises
        return None
    if type(module) is str:
        for m in forbidden.modules:
            if module == m or module.startswith(m + "."):
                return f"part of the forbidden module {m}"
        try:
            name = getattr(obj, "__name__", "")
        except Exception:  # noqa: BLE001
            name = ""
        if module.split(".")[0] == "ntklib" and (any(_private(p) for p in module.split("."))
                                                  or (type(name) is str and _private(name))):
            return "a private part of ntklib"
    return None


class _Env:
    """name -> set of dotted paths it may denote (flow-insensitive, over every cell)."""

    def __init__(self):
        self.paths: dict[str, set] = {}

    def add(self, name, path):
        s = self.paths.setdefault(name, set())
        if path not in s:
            s.add(path)
            return True
        return False

    def expr_paths(self, node) -> set:
        if isinstance(node, ast.Name):
            return set(self.paths.get(node.id, ()))
        if isinstance(node, ast.Attribute):
            return {f"{p}.{node.attr}" for p in self.expr_paths(node.value)}
        if isinstance(node, ast.Call) and _literal_getattr(node):
            return {f"{p}.{node.args[1].value}" for p in self.expr_paths(node.args[0])}
        return set()

    def learn(self, tree) -> bool:
        changed = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        changed |= self.add(a.asname, a.name)
                    else:
                        changed |= self.add(a.name.split(".")[0], a.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    if a.name != "*":
                        changed |= self.add(a.asname or a.name, f"{node.module}.{a.name}")
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Name):
                        for p in self.expr_paths(node.value):
                            changed |= self.add(t.id, p)
                    elif isinstance(t, (ast.Tuple, ast.List)) and isinstance(node.value, (ast.Tuple, ast.List)):
                        for tt, vv in zip(t.elts, node.value.elts):
                            if isinstance(tt, ast.Name):
                                for p in self.expr_paths(vv):
                                    changed |= self.add(tt.id, p)
        return changed


def _literal_getattr(node) -> bool:
    return (isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str))


def _docstrings(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                ids.add(id(first.value))
    return ids


def _magic_call_ok(node) -> bool:
    """``get_ipython().run_line_magic("timeit", ...)``, as IPython writes the allowed magics."""
    call0 = getattr(node, "_parent", None)
    attr = getattr(call0, "_parent", None)
    call = getattr(attr, "_parent", None)
    return (isinstance(call0, ast.Call) and isinstance(attr, ast.Attribute)
            and attr.attr in ("run_line_magic", "run_cell_magic") and isinstance(call, ast.Call) and call.args
            and isinstance(call.args[0], ast.Constant) and call.args[0].value in ALLOWED_MAGICS)


def _defined_by_code(trees) -> set[str]:
    """Names bound by ``def``/``class`` statements: they denote code written in the notebook."""
    return {n.name for t in trees for n in ast.walk(t) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                          ast.ClassDef))}


def _split_cell_magic(src: str) -> tuple[str | None, str, int]:
    """(cell magic name or None, the code to analyse, its line offset in the cell)."""
    if src.lstrip().startswith("%%"):
        first, _, body = src.lstrip().partition("\n")
        return first[2:].split()[0] if first[2:].split() else "", body, 1
    return None, src, 0


def find_shortcuts(cells, forbidden: Forbidden, context=()) -> list[str]:
    """Violations in ``cells`` -- ``(label, source, lines)`` triples, where ``lines`` is the set of
    line numbers (from 1) the student wrote, or None for all -- one message each, e.g.
    ``"code cell 7, line 3: `np.linalg.inv` (a forbidden function)"``. ``context`` holds the sources
    of the notebook's other code cells, whose imports and aliases the checked cells may use."""
    from .analysis import python_source

    env = _Env()
    trees = []
    for src in [*context, *(c[1] for c in cells)]:
        try:
            trees.append(ast.parse(python_source(_split_cell_magic(src)[1])))
        except (SyntaxError, ValueError):
            pass
    for _ in range(8):
        if not any([env.learn(t) for t in trees]):
            break
    own = _defined_by_code(trees)
    problems: list[str] = []
    for label, src, lines in cells:
        magic, code, offset = _split_cell_magic(src)
        if magic is not None and magic not in ALLOWED_MAGICS | {"capture"}:
            if lines is None or 1 in lines:
                problems.append(f"{label}, line 1: the cell magic %%{magic} (not allowed in graded code)")
            continue
        try:
            tree = ast.parse(python_source(code))
        except (SyntaxError, ValueError):
            continue  # a cell that does not parse does not run either
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                child._parent = node
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            line = getattr(node, "lineno", None)
            if line is None or (lines is not None and line + offset not in lines):
                continue
            why = _check_node(node, env, forbidden, docs, own)
            if why:
                problems.append(f"{label}, line {line + offset}: {why}")
    return list(dict.fromkeys(problems))


def _check_path(path: str, forbidden: Forbidden) -> str | None:
    parts = path.split(".")
    if parts[0] in BANNED_MODULES:
        return f"`{path}` (the module {parts[0]} is not allowed in graded code)"
    for banned in BANNED_PATHS:
        if path == banned or path.startswith(banned + ".") or (banned in ("os.exec", "os.spawn", "os.posix_spawn")
                                                               and path.startswith(banned)):
            return f"`{path}` (dynamic access or processes are not allowed in graded code)"
    if parts[0] in SEARCH_ROOTS and any(_private(p) for p in parts[1:]):
        return f"`{path}` (a private part of {parts[0]})"
    obj = resolve_path(path)
    if obj is not None:
        why = is_forbidden_object(obj, forbidden)
        if why:
            return f"`{path}` ({why})"
    return None


def _check_node(node, env: _Env, forbidden: Forbidden, docs: set[int], own: set[str]) -> str | None:
    if isinstance(node, ast.Name):
        if node.id in forbidden.names and node.id not in own:
            return f"`{node.id}` (a forbidden name)"
        if node.id == "__builtins__":
            return "`__builtins__` (dynamic access is not allowed in graded code)"
        if node.id == "get_ipython" and not _magic_call_ok(node):
            return "`get_ipython()` (IPython's machinery is not allowed in graded code)"
        if node.id in BANNED_CALLS:
            return f"`{node.id}` (dynamic code or namespace access is not allowed in graded code)"
        for p in env.paths.get(node.id, ()):
            why = _check_path(p, forbidden)
            if why:
                return why
    elif isinstance(node, ast.Attribute):
        if node.attr in forbidden.names:
            return f"`.{node.attr}` (a forbidden name)"
        if (node.attr.startswith("__") and node.attr.endswith("__") and node.attr not in ALLOWED_DUNDERS) \
                or node.attr in BANNED_ATTRS:
            return f"`.{node.attr}` (dynamic access is not allowed in graded code)"
        if _private(node.attr) and node.attr in _ntklib_private_names():
            return f"`.{node.attr}` (a private part of ntklib)"
        for p in env.expr_paths(node):
            why = _check_path(p, forbidden)
            if why:
                return why
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr",
                                                                                              "delattr"):
        literal = len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
        if not literal:
            return f"`{node.func.id}(...)` with a computed name (dynamic access is not allowed in graded code)"
        name = node.args[1].value
        if name in forbidden.names or (name.startswith("__") and name not in ALLOWED_DUNDERS) or name in BANNED_ATTRS \
                or (_private(name) and name in _ntklib_private_names()):
            return f"`{node.func.id}(..., {name!r})` (a forbidden, private or dynamic name)"
        for p in env.expr_paths(node):
            why = _check_path(p, forbidden)
            if why:
                return why
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        module = node.module if isinstance(node, ast.ImportFrom) else None
        if isinstance(node, ast.ImportFrom) and node.level:
            return "a relative import (not allowed in graded code)"
        for a in node.names:
            path = f"{module}.{a.name}" if module else a.name
            for token in path.split("."):
                if token in forbidden.names:
                    return f"`{path}` (a forbidden name)"
            why = _check_path(path, forbidden)
            if why:
                return why
    elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
        text = node.value.strip()
        if len(text) < 200 and _NAME_LIKE.fullmatch(text):
            tokens = set(text.split("."))
            hit = sorted(tokens & forbidden.names)
            if hit:
                return f"the string {text!r} names `{hit[0]}` (a forbidden name)"
            if any(_private(t) and t in _ntklib_private_names() for t in tokens):
                return f"the string {text!r} names a private part of ntklib"
    return None


_NAME_LIKE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
BANNED_ATTRS = {"tb_frame", "tb_next", "f_globals", "f_locals", "f_back", "f_builtins", "f_code", "gi_frame",
                "cr_frame", "ag_frame", "gi_code", "cr_code", "co_code", "func_globals"}
_PRIVATE_CACHE: set[str] | None = None


def _ntklib_private_names() -> set[str]:
    global _PRIVATE_CACHE
    if _PRIVATE_CACHE is None:
        names = set()
        for name, mod in list(sys.modules.items()):
            if name.split(".")[0] == "ntklib" and isinstance(mod, types.ModuleType):
                names |= {k for k, v in list(vars(mod).items())
                          if isinstance(k, str) and _private(k) and (callable(v) or isinstance(v, types.ModuleType))}
                names |= {p for p in name.split(".") if _private(p)}
        _PRIVATE_CACHE = names
    return _PRIVATE_CACHE
