r"""Make ``tests/library/data/nt_reference.npz``: kernels computed by neural-tangents, the field's reference library.

``tests/library/test_neural_tangents_reference.py`` (which needs no jax) rebuilds every architecture in
ntklib and checks that it reproduces these numbers. neural-tangents is an independent
implementation (JAX, Google), so its outputs are a legitimate oracle for ntklib.

How the file was made (run from the repository root, in the reference venv of benchmarks/README.md)::

    python3 -m venv /tmp/ntvenv
    /tmp/ntvenv/bin/pip install "jax==0.4.23" "jaxlib==0.4.23" "numpy<2" "scipy<1.13" frozendict
    /tmp/ntvenv/bin/pip install --no-deps neural-tangents==0.6.5
    /tmp/ntvenv/bin/pip install torch==2.13.0 absl-py tqdm scikit-learn
    /tmp/ntvenv/bin/pip install --no-deps -e .
    /tmp/ntvenv/bin/python benchmarks/make_nt_reference.py

with neural-tangents 0.6.5, jax/jaxlib 0.4.23, numpy 1.26.4, scipy 1.12.0, Python 3.11 (the exact
versions are also stored in the file, key ``versions``). Everything is float64 (``jax_enable_x64``).

What is stored, for fixed inputs ``x1`` (7, 5) and ``x2`` (4, 5) -- ``x1`` holds a repeated
row (4 = 0), a negated row (5 = -1) and a zero row (6), ``x2`` shares row 2 of ``x1``:

* ``specs``: a JSON list of architectures, each ``{"name", "layers": [...], "empirical": bool}``
  with layers such as ``{"layer": "Dense", "width": 16, "W_std": 1.5, "b_std": 0.1,
  "parameterization": "ntk"}``, ``{"layer": "Relu"}``, ``{"layer": "Erf", "a":..,"b":..,"c":..}``,
  ``{"layer": "Tanh", "deg": 48, "derivative": "closed" | "autodiff"}``;
* ``<name>/nngp_11``, ``<name>/ntk_11`` (7, 7): ``kernel_fn(x1, None)``; ``<name>/nngp_12``,
  ``<name>/ntk_12`` (7, 4): ``kernel_fn(x1, x2)`` -- neural-tangents' analytic kernels;
* for ``empirical`` architectures, one finite network (built by ntklib's ``arch.module(5, seed=i)``
  in float64, its weights copied into neural-tangents' parameters, whose ``Dense`` layout is
  (in, out)): ``<name>/W<j>`` (in, out) and ``<name>/b<j>`` (out,) for the j-th Dense layer,
  ``<name>/f_1`` (7, k) = neural-tangents' ``apply_fn(params, x1)``, and
  ``<name>/emp_ntk_11`` (7, 7, k, k), ``<name>/emp_ntk_12`` (7, 4, k, k) = neural-tangents'
  ``empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0)`` with
  ``implementation=JACOBIAN_CONTRACTION`` (checked here against ``STRUCTURED_DERIVATIVES`` and
  ``NTK_VECTOR_PRODUCTS`` to 1e-12).

The script also prints ntklib's largest relative deviation from neural-tangents per
architecture, so one run in the reference venv is already a cross-check.
"""
from __future__ import annotations

import json
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _nt import import_neural_tangents, versions  # noqa: E402

OUT = ROOT / "tests" / "library" / "data" / "nt_reference.npz"


# ---------------------------------------------------------------------------------------------
# Architectures
# ---------------------------------------------------------------------------------------------
def dense(width, W_std=1.0, b_std=0.0, parameterization="ntk"):
    return {"layer": "Dense", "width": width, "W_std": W_std, "b_std": b_std, "parameterization": parameterization}


def mlp(act, depth, width, out, W_std, b_std, parameterization="ntk"):
    """``depth`` hidden (Dense, act) blocks and a Dense readout of ``out`` units."""
    layers = []
    for _ in range(depth):
        layers += [dense(width, W_std, b_std, parameterization), dict(act)]
    return layers + [dense(out, W_std, b_std, parameterization)]


RELU = {"layer": "Relu"}
SQRT2 = math.sqrt(2.0)


def architectures() -> list[dict]:
    a = []
    add = lambda name, layers, empirical=True: a.append({"name": name, "layers": layers, "empirical": empirical})
    # affine only (depth 0): the input kernel x.x'/d and the bias terms
    add("dense_ntk_out3", [dense(3, 1.3, 0.2)])
    add("dense_ntk_nobias_out1", [dense(1, 0.7, None)])
    add("dense_std_out3", [dense(3, 1.3, 0.2, "standard")])
    add("dense_std_b0_out1", [dense(1, 1.0, 0.0, "standard")])
    add("dense_std_nobias_out1", [dense(1, 1.0, None, "standard")])
    # ReLU, depths 1..5, several W_std / b_std, both parameterizations
    add("relu_d1_ntk_out1", mlp(RELU, 1, 16, 1, SQRT2, 0.0))
    add("relu_d2_ntk_out3", mlp(RELU, 2, 16, 3, 1.5, 0.1))
    add("relu_d3_ntk_nobias_out1", mlp(RELU, 3, 24, 1, 1.2, None))
    add("relu_d4_ntk_out1", mlp(RELU, 4, 16, 1, 0.9, 0.5))
    add("relu_d5_ntk_out3", mlp(RELU, 5, 16, 3, SQRT2, 0.05))
    add("relu_d1_std_out3", mlp(RELU, 1, 16, 3, 1.5, 0.1, "standard"))
    add("relu_d2_std_b0_out1", mlp(RELU, 2, 32, 1, SQRT2, 0.0, "standard"))
    add("relu_d3_std_nobias_out1", mlp(RELU, 3, 24, 1, 1.1, None, "standard"))
    add("relu_d5_std_out1", mlp(RELU, 5, 16, 1, 1.3, 0.3, "standard"))
    # a deep ReLU network (correlations near 1: the arccos kernel at its most delicate)
    add("relu_d50_ntk_out1", mlp(RELU, 50, 16, 1, SQRT2, 0.0))
    add("relu_d50_std_bias_out1", mlp(RELU, 50, 16, 1, SQRT2, 0.1, "standard"), empirical=False)
    # leaky / a-b ReLU, |x|
    add("leakyrelu_d2_ntk_out1", mlp({"layer": "LeakyRelu", "alpha": 0.1}, 2, 16, 1, 1.4, 0.2))
    add("abrelu_d3_ntk_out3", mlp({"layer": "ABRelu", "a": -0.5, "b": 1.3}, 3, 16, 3, 1.0, 0.3))
    add("abrelu_abs_d2_std_out1", mlp({"layer": "ABRelu", "a": -1.0, "b": 1.0}, 2, 16, 1, 1.0, 0.1, "standard"))
    # erf: a erf(b x) + c
    add("erf_d2_ntk_out1", mlp({"layer": "Erf", "a": 1.0, "b": 1.0, "c": 0.0}, 2, 16, 1, 1.0, 0.0))
    add("erf_abc_d3_ntk_out3", mlp({"layer": "Erf", "a": 1.7, "b": 0.6, "c": 0.3}, 3, 16, 3, 1.6, 0.2))
    add("erf_abc_d2_std_nobias_out1", mlp({"layer": "Erf", "a": 0.8, "b": 2.0, "c": -0.4}, 2, 16, 1, 1.3, None,
                                          "standard"))
    # gelu
    add("gelu_d2_ntk_out1", mlp({"layer": "Gelu"}, 2, 16, 1, 1.5, 0.1))
    add("gelu_d4_std_out3", mlp({"layer": "Gelu"}, 4, 16, 3, 1.2, 0.0, "standard"))
    add("gelu_d3_ntk_nobias_out1", mlp({"layer": "Gelu"}, 3, 16, 1, 2.0, None))
    # identity: deep linear networks
    add("identity_d3_ntk_out1", mlp({"layer": "Identity"}, 3, 16, 1, 1.1, 0.2))
    add("identity_d2_std_out3", mlp({"layer": "Identity"}, 2, 16, 3, 0.9, 0.3, "standard"))
    # sin: a sin(b x + c)
    add("sin_d2_ntk_out1", mlp({"layer": "Sin", "a": 1.0, "b": 1.0, "c": 0.0}, 2, 16, 1, 1.0, 0.1))
    add("sin_abc_d3_ntk_out3", mlp({"layer": "Sin", "a": 1.3, "b": 0.7, "c": 0.4}, 3, 16, 3, 1.4, 0.2))
    add("sin_abc_d2_std_nobias_out1", mlp({"layer": "Sin", "a": 0.9, "b": 1.5, "c": 1.1}, 2, 16, 1, 1.2, None,
                                          "standard"))
    # tanh by Gauss-Hermite quadrature: NT's ElementwiseNumerical vs ntklib's Elementwise
    add("tanh_d2_ntk_out1", mlp({"layer": "Tanh", "deg": 48, "derivative": "closed"}, 2, 16, 1, 1.5, 0.1))
    add("tanh_d3_std_out3", mlp({"layer": "Tanh", "deg": 32, "derivative": "closed"}, 3, 16, 3, 1.2, 0.2,
                                "standard"))
    add("tanh_autodiff_d2_ntk_out1", mlp({"layer": "Tanh", "deg": 40, "derivative": "autodiff"}, 2, 16, 1, 1.3,
                                         0.3))
    # zero-norm input with no bias before a quadrature layer (neural-tangents divides 0 by 0 there)
    add("tanh_d2_ntk_nobias_out1", mlp({"layer": "Tanh", "deg": 48, "derivative": "closed"}, 2, 16, 1, 1.5, None))
    # a mixture of everything, both parameterizations
    add("mixed_out3", [dense(24, 1.5, 0.1), {"layer": "Erf", "a": 1.2, "b": 0.8, "c": 0.1},
                       dense(16, 1.3, 0.2, "standard"), RELU,
                       dense(16, 1.1, None), {"layer": "Gelu"},
                       dense(20, 1.2, 0.0, "standard"), {"layer": "Sin", "a": 1.0, "b": 0.9, "c": 0.3},
                       dense(16, 1.4, 0.3), {"layer": "LeakyRelu", "alpha": 0.2},
                       dense(3, 1.0, 0.05)])
    return a


def inputs():
    """x1 (7, 5) with a repeated, a negated and a zero row; x2 (4, 5) sharing row 2 of x1."""
    rng = np.random.default_rng(20240501)
    r = rng.standard_normal((7, 5)) * np.array([1.0, 0.5, 2.0, 1.5, 0.8, 1.2, 3.0])[:, None]
    x1 = np.stack([r[0], r[1], r[2], r[3], r[0], -r[1], np.zeros(5)])
    x2 = np.stack([r[4], r[5], r[2], r[6]])
    return x1, x2


# ---------------------------------------------------------------------------------------------
# The same architecture in both libraries
# ---------------------------------------------------------------------------------------------
def nt_layer(spec, stax, jnp):
    kind = spec["layer"]
    if kind == "Dense":
        return stax.Dense(spec["width"], W_std=spec["W_std"], b_std=spec["b_std"],
                          parameterization=spec["parameterization"])
    if kind == "Relu":
        return stax.Relu()
    if kind == "LeakyRelu":
        return stax.LeakyRelu(spec["alpha"])
    if kind == "ABRelu":
        return stax.ABRelu(spec["a"], spec["b"])
    if kind == "Erf":
        return stax.Erf(spec["a"], spec["b"], spec["c"])
    if kind == "Gelu":
        return stax.Gelu(approximate=False)
    if kind == "Identity":
        return stax.Identity()
    if kind == "Sin":
        return stax.Sin(spec["a"], spec["b"], spec["c"])
    if kind == "Tanh":
        df = (lambda x: 1.0 - jnp.tanh(x) ** 2) if spec["derivative"] == "closed" else None
        return stax.ElementwiseNumerical(jnp.tanh, deg=spec["deg"], df=df)
    raise ValueError(kind)


def ntklib_layer(spec):
    import torch

    import ntklib as nk
    kind = spec["layer"]
    if kind == "Dense":
        return nk.Dense(spec["width"], W_std=spec["W_std"], b_std=spec["b_std"], parameterization=spec["parameterization"])
    if kind == "Tanh":
        if spec["derivative"] == "closed":
            return nk.Tanh(deg=spec["deg"])
        return nk.Elementwise(torch.tanh, deg=spec["deg"], name="tanh")
    simple = {"Relu": nk.Relu, "Gelu": nk.Gelu, "Identity": nk.Identity}
    if kind in simple:
        return simple[kind]()
    if kind == "LeakyRelu":
        return nk.LeakyRelu(spec["alpha"])
    if kind == "ABRelu":
        return nk.ABRelu(spec["a"], spec["b"])
    return {"Erf": nk.Erf, "Sin": nk.Sin}[kind](spec["a"], spec["b"], spec["c"])


def relative_error(a, b) -> float:
    """max |a - b| / max |b| (inf where NaN appear on one side only)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return float("inf")
    both_nan = np.isnan(a) & np.isnan(b)
    if (np.isnan(a) ^ np.isnan(b)).any():
        return float("inf")
    diff = np.where(both_nan, 0.0, np.abs(a - b))
    scale = np.nanmax(np.abs(b)) if np.isfinite(b).any() else 1.0
    return float(diff.max() / max(scale, 1e-300))


def main():
    mods = import_neural_tangents(x64=True)
    if mods is None:
        sys.exit("neural-tangents and jax are needed: see benchmarks/README.md for the reference venv.")
    nt, stax, jax, jnp = mods
    import torch

    import ntklib as nk
    torch.set_default_dtype(torch.float64)
    impl = nt.NtkImplementation

    x1, x2 = inputs()
    archs = architectures()
    data = {"x1": x1, "x2": x2, "specs": np.array(json.dumps(archs)),
            "versions": np.array(json.dumps(versions()))}
    print("versions:", versions())
    print(f"{'architecture':34s} {'nngp_11':>9s} {'ntk_11':>9s} {'nngp_12':>9s} {'ntk_12':>9s} {'emp_ntk':>9s}")
    for seed, arch in enumerate(archs):
        name = arch["name"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ElementwiseNumerical warns on construction
            init_fn, apply_fn, kernel_fn = stax.serial(*[nt_layer(s, stax, jnp) for s in arch["layers"]])
        k11 = kernel_fn(jnp.asarray(x1), None, ("nngp", "ntk"))
        k12 = kernel_fn(jnp.asarray(x1), jnp.asarray(x2), ("nngp", "ntk"))
        out = {"nngp_11": k11.nngp, "ntk_11": k11.ntk, "nngp_12": k12.nngp, "ntk_12": k12.ntk}
        out = {key: np.asarray(v, dtype=np.float64) for key, v in out.items()}

        # ntklib on the same architecture (only printed here; the test asserts it)
        ours = nk.serial(*[ntklib_layer(s) for s in arch["layers"]])
        t1, t2 = torch.as_tensor(x1), torch.as_tensor(x2)
        q11, q12 = ours.kernel(t1), ours.kernel(t1, t2)
        errs = [relative_error(q11.nngp.numpy(), out["nngp_11"]), relative_error(q11.ntk.numpy(), out["ntk_11"]),
                relative_error(q12.nngp.numpy(), out["nngp_12"]), relative_error(q12.ntk.numpy(), out["ntk_12"])]

        emp_err = float("nan")
        if arch["empirical"]:
            net = ours.module(x1.shape[1], seed=seed, dtype=torch.float64, device="cpu")
            params, j = [], 0
            for m in net:
                if isinstance(m, nk.DenseModule):
                    W = m.weight.detach().numpy().T.copy()  # (in, out): neural-tangents' layout
                    b = None if m.bias is None else m.bias.detach().numpy().copy()  # (out,)
                    out[f"W{j}"] = W
                    if b is not None:
                        out[f"b{j}"] = b
                    params.append((jnp.asarray(W), None if b is None else jnp.asarray(b)[None, :]))
                    j += 1
                else:
                    params.append(())
            f1 = np.asarray(apply_fn(params, jnp.asarray(x1)))  # (7, k)
            out["f_1"] = f1
            ntk_fns = {i: jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0, implementation=i))
                       for i in (impl.JACOBIAN_CONTRACTION, impl.STRUCTURED_DERIVATIVES, impl.NTK_VECTOR_PRODUCTS)}
            for key, xb in (("emp_ntk_11", None), ("emp_ntk_12", jnp.asarray(x2))):
                res = {i: np.asarray(fn(jnp.asarray(x1), xb, params)) for i, fn in ntk_fns.items()}
                ref = res[impl.JACOBIAN_CONTRACTION]
                for i, r in res.items():
                    assert relative_error(r, ref) < 1e-12, (name, i, relative_error(r, ref))
                out[key] = ref  # (7, n2, k, k)
            emp_ours = nk.empirical_ntk(net, t1, t2, mode="full").numpy()
            emp_err = relative_error(emp_ours, out["emp_ntk_12"])
            assert relative_error(net(t1).detach().numpy(), f1) < 1e-12, f"{name}: forward passes differ"
        for key, v in out.items():
            data[f"{name}/{key}"] = v
        print(f"{name:34s} " + " ".join(f"{e:9.1e}" for e in errs + [emp_err]))

    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT.relative_to(ROOT)} ({os.path.getsize(OUT) / 1024:.0f} KiB, {len(archs)} architectures)")


if __name__ == "__main__":
    main()
