"""environment.yml (Binder, conda), pyproject.toml, the bootstrap and the README tell the same story.

Binder cannot be reached from CI, so its inputs are checked against the package's own metadata:
  * every runtime and ``course`` dependency of pyproject.toml is in environment.yml (PyPI names
    mapped to conda-forge's: torch -> pytorch, matplotlib -> matplotlib-base), and the range that
    environment.yml allows lies inside pyproject's range (both parsed with ``packaging``);
  * environment.yml's Python is one that ``requires-python`` accepts, and so is the README's;
  * PyTorch is CPU-only in environment.yml, and the bootstrap's pinned torch satisfies pyproject;
  * ntklib itself is installed (pip ``-e .``); postBuild and bootstrap switch off the same
    instructor-only nbgrader extensions; the README's Binder badge opens an existing course notebook.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[2]

# PyPI name -> the conda-forge names that provide it (first one preferred).
CONDA_NAMES = {
    "torch": ("pytorch",),
    "matplotlib": ("matplotlib-base", "matplotlib"),
}
# Published on PyPI only: environment.yml installs them in its pip section, with a compatible range.
PIP_ONLY = {"mnist1d"}


# --------------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def env() -> dict:
    return yaml.safe_load((REPO / "environment.yml").read_text(encoding="utf-8"))


def conda_specs(env: dict) -> dict[str, tuple[str, str]]:
    """{name: (version spec, build spec)} of environment.yml's conda dependencies."""
    out = {}
    for dep in env.get("dependencies", []):
        if not isinstance(dep, str):
            continue
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(?:([=<>!~][^\s]*|[0-9][^\s]*)\s*([^\s]+)?)?\s*", dep)
        assert m, f"cannot parse the conda dependency {dep!r}"
        name, version, build = m.group(1).lower(), m.group(2) or "", m.group(3) or ""
        if version.count("=") >= 2 and version.startswith("=") and not version.startswith("=="):
            version, _, build = version[1:].partition("=")  # name=version=build
            version = "=" + version
        out[name] = (version, build)
    return out


def pip_entries(env: dict) -> list[str]:
    for dep in env.get("dependencies", []):
        if isinstance(dep, dict) and "pip" in dep:
            return [str(x) for x in dep["pip"]]
    return []


def conda_to_specifier(version: str) -> SpecifierSet:
    """A conda version spec (``>=1.2,<2``, ``=3.11``, ``3.11.*``, ``1.2``) as a packaging SpecifierSet."""
    if not version:
        return SpecifierSet()
    assert "|" not in version, f"conda OR-specs are not supported here: {version!r}"
    parts = []
    for part in version.split(","):
        part = part.strip()
        if re.fullmatch(r"=?[0-9][0-9A-Za-z.]*(\.\*)?", part):  # =3.11, 3.11, 3.11.* : fuzzy match
            base = part.lstrip("=").removesuffix(".*")
            parts.append(f"=={base}.*")
        else:
            parts.append(part)
    return SpecifierSet(",".join(parts))


def interval(spec: SpecifierSet):
    """The versions a SpecifierSet of bounds allows, as ((lo, lo_inclusive), (hi, hi_inclusive)); None = unbounded."""
    lo, hi = None, None

    def tighter_lo(a, b):
        if a is None:
            return b
        return max(a, b, key=lambda t: (t[0], not t[1]))

    def tighter_hi(a, b):
        if a is None:
            return b
        return min(a, b, key=lambda t: (t[0], t[1]))

    for s in spec:
        op, v = s.operator, s.version
        if op == "==" and v.endswith(".*"):
            base = Version(v[:-2])
            nxt = Version(".".join(map(str, (*base.release[:-1], base.release[-1] + 1))))
            lo, hi = tighter_lo(lo, (base, True)), tighter_hi(hi, (nxt, False))
        elif op in ("==", "==="):
            lo, hi = tighter_lo(lo, (Version(v), True)), tighter_hi(hi, (Version(v), True))
        elif op == ">=":
            lo = tighter_lo(lo, (Version(v), True))
        elif op == ">":
            lo = tighter_lo(lo, (Version(v), False))
        elif op == "<=":
            hi = tighter_hi(hi, (Version(v), True))
        elif op == "<":
            hi = tighter_hi(hi, (Version(v), False))
        elif op == "~=":
            base = Version(v)
            rel = base.release[:-1]
            nxt = Version(".".join(map(str, (*rel[:-1], rel[-1] + 1))))
            lo, hi = tighter_lo(lo, (base, True)), tighter_hi(hi, (nxt, False))
        else:
            raise AssertionError(f"unsupported specifier {s} (only bounds, ==, ~= and X.Y.*)")
    return lo, hi


def inside(inner: SpecifierSet, outer: SpecifierSet) -> bool:
    """Whether every version that ``inner`` allows is allowed by ``outer`` (and ``inner`` allows some)."""
    (ilo, ihi), (olo, ohi) = interval(inner), interval(outer)
    if ilo is not None and ihi is not None:
        if ilo[0] > ihi[0] or (ilo[0] == ihi[0] and not (ilo[1] and ihi[1])):
            return False  # empty
    lo_ok = olo is None or (ilo is not None and (ilo[0] > olo[0] or (ilo[0] == olo[0] and (olo[1] or not ilo[1]))))
    hi_ok = ohi is None or (ihi is not None and (ihi[0] < ohi[0] or (ihi[0] == ohi[0] and (ohi[1] or not ihi[1]))))
    return lo_ok and hi_ok


def required(pyproject: dict) -> list[Requirement]:
    deps = list(pyproject["project"]["dependencies"]) + list(pyproject["project"]["optional-dependencies"]["course"])
    return [Requirement(d) for d in deps]


# --------------------------------------------------------------------------------------------------
# the version-range logic itself, against packaging's own membership test
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("inner, outer, expected", [
    (">=4.0,<5", ">=4.0,<5", True),
    (">=4.2", ">=4.0,<5", False),           # no upper bound inside a bounded range
    (">=3.9", ">=4.0,<5", False),
    ("==3.11.*", ">=3.10", True),
    ("==3.9.*", ">=3.10", False),
    (">=2.2,<3", ">=2.2", True),
    (">2.2", ">=2.2", True),
    (">=2.2", ">2.2", False),
    (">=5,<4", ">=1", False),                # empty
    ("~=1.4.2", ">=1.4,<1.5", True),
])
def test_range_inclusion_matches_packaging_membership(inner, outer, expected):
    assert inside(SpecifierSet(inner), SpecifierSet(outer)) is expected
    # independent check on sample versions: whatever inner admits, outer must admit (when expected)
    probes = [Version(v) for v in ("1.0", "1.4.2", "1.4.9", "2.2", "2.2.1", "2.13.0", "3.9.1", "3.10.0",
                                   "3.11.4", "3.12.0", "4.0", "4.6.6", "4.99", "5.0", "6.1")]
    admitted = [p for p in probes if p in SpecifierSet(inner)]
    if expected:
        assert all(p in SpecifierSet(outer) for p in admitted)


def test_conda_specs_translate_to_packaging():
    assert conda_to_specifier("=3.11") == SpecifierSet("==3.11.*")
    assert conda_to_specifier(">=4.0,<5") == SpecifierSet(">=4.0,<5")
    assert Version("3.11.7") in conda_to_specifier("=3.11") and Version("3.12.0") not in conda_to_specifier("=3.11")


# --------------------------------------------------------------------------------------------------
# environment.yml vs pyproject.toml
# --------------------------------------------------------------------------------------------------


def test_environment_yml_uses_conda_forge_only(env):
    channels = env.get("channels", [])
    assert channels and channels[0] == "conda-forge", f"conda-forge must be the first channel: {channels}"
    assert not {"defaults", "pytorch", "nvidia"} & set(channels), channels


def test_every_runtime_and_course_dependency_is_in_environment_yml_with_a_compatible_range(pyproject, env):
    specs = conda_specs(env)
    pip = {Requirement(e).name.lower(): Requirement(e) for e in pip_entries(env) if not e.strip().startswith("-")}
    problems = []
    for req in required(pyproject):
        if req.name.lower() in PIP_ONLY:
            if req.name.lower() not in pip:
                problems.append(f"{req.name}: missing from environment.yml's pip section (it is on PyPI only)")
            elif not inside(pip[req.name.lower()].specifier, req.specifier):
                problems.append(f"{req.name}: environment.yml's pip section allows {pip[req.name.lower()].specifier}, "
                                f"outside pyproject's {req.specifier}")
            continue
        names = CONDA_NAMES.get(req.name.lower(), (req.name.lower(),))
        found = [n for n in names if n in specs]
        if not found:
            problems.append(f"{req.name}: missing from environment.yml (conda name {' or '.join(names)})")
            continue
        version, _ = specs[found[0]]
        conda_spec = conda_to_specifier(version)
        if not inside(conda_spec, req.specifier):
            problems.append(f"{req.name}: environment.yml allows {found[0]} {version or '(any)'}, "
                            f"outside pyproject's {req.specifier}")
    assert not problems, "\n".join(problems)


def test_python_versions_agree(pyproject, env):
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    version, _ = conda_specs(env)["python"]
    assert re.fullmatch(r"=\d+\.\d+", version), f"repo2docker reads only python=X.Y; got python{version}"
    assert inside(conda_to_specifier(version), requires), f"python{version} vs requires-python {requires}"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"Python\s*(?:≥|>=)\s*(\d+\.\d+)", readme)
    assert m, "the README should state the minimum Python version (e.g. 'Python ≥ 3.10')"
    assert SpecifierSet(f">={m.group(1)}") == requires, (
        f"README says Python ≥ {m.group(1)}, pyproject requires-python {requires}")


def test_pytorch_is_cpu_only_in_environment_yml(env):
    specs = conda_specs(env)
    assert "pytorch" in specs, "environment.yml must install pytorch"
    cpu_meta = "pytorch-cpu" in specs
    cpu_build = specs["pytorch"][1].startswith("cpu")
    assert cpu_meta or cpu_build, "pin the CPU build: add pytorch-cpu, or `pytorch >=X cpu_*`"
    gpu = [n for n in specs if n in {"pytorch-gpu", "cudatoolkit", "cuda-version", "pytorch-cuda"} or n.startswith("cuda-")]
    assert not gpu, f"CUDA packages in a CPU-only environment: {gpu}"


def test_environment_yml_installs_ntklib_itself(env):
    entries = [e.strip() for e in pip_entries(env)]
    assert any(e in {"-e .", ".", "-e ./", "./"} for e in entries), f"pip section should install this repo: {entries}"
    assert "pip" in conda_specs(env), "list pip among the conda dependencies when using a pip section"


def test_bootstrap_torch_pin_satisfies_pyproject_and_environment(pyproject, env):
    text = (REPO / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")
    m = re.search(r'TORCH_VERSION="\$\{TORCH_VERSION:-([0-9][0-9A-Za-z.+]*)\}"', text)
    assert m, "scripts/bootstrap.sh should pin TORCH_VERSION"
    pinned = Version(m.group(1))
    torch_req = next(r for r in required(pyproject) if r.name == "torch")
    assert pinned in torch_req.specifier, f"bootstrap pins torch {pinned}, pyproject wants {torch_req.specifier}"
    assert pinned in conda_to_specifier(conda_specs(env)["pytorch"][0]), "environment.yml's pytorch range excludes the bootstrap pin"
    assert "download.pytorch.org/whl/cpu" in text, "the bootstrap installs torch from the CPU wheel index"


def test_bootstrap_installs_extras_that_exist(pyproject):
    text = (REPO / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")
    m = re.search(r'-e\s+"?\.\[([a-z,_-]+)\]"?', text)
    assert m, "bootstrap should `pip install -e .[extras]`"
    extras = set(m.group(1).split(","))
    assert extras <= set(pyproject["project"]["optional-dependencies"]), extras
    assert {"course", "test"} <= extras


# --------------------------------------------------------------------------------------------------
# postBuild, bootstrap and the README
# --------------------------------------------------------------------------------------------------


def _nbgrader_switches(text: str) -> tuple[set[str], set[str]]:
    lab = set(re.findall(r"@jupyter/nbgrader:[a-z-]+", text))
    server = set(re.findall(r"nbgrader\.server_extensions\.[a-z_]+", text))
    return lab, server


def test_postbuild_and_bootstrap_disable_the_same_instructor_extensions():
    post = (REPO / "postBuild").read_text(encoding="utf-8")
    boot = (REPO / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")
    assert os.access(REPO / "postBuild", os.X_OK), "postBuild must be executable"
    assert _nbgrader_switches(post) == _nbgrader_switches(boot), (_nbgrader_switches(post), _nbgrader_switches(boot))
    lab, server = _nbgrader_switches(post)
    assert "@jupyter/nbgrader:formgrader" in lab and not any("validate" in x for x in lab | server), (
        "students keep the Validate button; the formgrader goes")


def test_readme_binder_badge_opens_an_existing_course_notebook():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"https://mybinder\.org/v2/gh/[^/\s]+/[^/\s]+/[^?\s)]+\?urlpath=(?:lab|%2Flab)(?:/|%2F)tree(?:/|%2F)([^)\s\"]+\.ipynb)", readme)
    assert m, ("README has no Binder badge opening JupyterLab on a notebook; add the line from docs/binder.md:\n"
               "[![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/OWNER/REPO/HEAD"
               "?urlpath=lab/tree/course/00_preliminaries/00_preliminaries.ipynb)")
    target = m.group(1).replace("%2F", "/")
    assert target.startswith("course/"), f"the badge should open a student notebook in course/, not {target}"
    assert (REPO / target).is_file(), f"the Binder badge opens {target}, which does not exist"
