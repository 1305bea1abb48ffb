r"""Make ``tests/library/data/nt_conv_reference.npz``: convolutional kernels computed by neural-tangents.

The convolutional twin of ``make_nt_reference.py`` (same reference venv, see benchmarks/README.md)::

    /tmp/ntvenv/bin/python benchmarks/make_nt_conv_reference.py

``tests/library/test_neural_tangents_reference.py`` (which needs no jax) rebuilds every architecture
in ntklib from its JSON spec and checks that it reproduces these numbers.

Layouts. ntklib is channel-first (torch): inputs (n, C, L) / (n, C, H, W), conv weights
(out, in, \*F), and ``Flatten`` orders entries (c, h, w). neural-tangents' ``stax`` defaults are
channel-last: inputs (n, L, C) / (n, H, W, C), weights (\*F, in, out), biases (1, .., 1, out), and
its ``Flatten`` orders (h, w, c). Inputs and weights are transposed here; the kernels do not
depend on the layout, except a kernel that ends on a spatial layer (every pair of positions):
neural-tangents' (n1, n2, H, H', W, W') is stored in ntklib's order (n1, n2, H, W, H', W').
neural-tangents' ``AvgPool(stride=None)`` means stride 1; strides are always given explicitly.

What is stored, for fixed inputs -- 1-D: ``x1_1d`` (5, 3, 9) whose row 3 repeats row 0 and row 4
is minus row 1, ``x2_1d`` (3, 3, 9) whose row 1 equals row 2 of x1; 2-D: ``x1_2d`` (4, 2, 6, 5)
whose row 3 repeats row 1, ``x2_2d`` (3, 2, 6, 5) whose row 0 is minus row 2 of x1:

* ``specs``: JSON list of ``{"name", "dim": 1 | 2, "layers": [...], "empirical": bool}``, layers
  such as ``{"layer": "Conv", "out_channels": 6, "kernel_size": [3], "stride": [1],
  "padding": "SAME", "W_std": 1.5, "b_std": 0.1, "parameterization": "ntk"}``,
  ``{"layer": "AvgPool", "window": [2], "stride": [2], "padding": "VALID"}``,
  ``{"layer": "GlobalAvgPool"}``, ``{"layer": "Flatten"}``, and the dense layers and
  activations of ``make_nt_reference.py``;
* ``<name>/nngp_11``, ``<name>/ntk_11``: ``kernel_fn(x1, None)``; ``<name>/nngp_12``,
  ``<name>/ntk_12``: ``kernel_fn(x1, x2)``; ``<name>/cov1``: neural-tangents' batch diagonal
  k(x1, x1) (its ``Kernel.cov1``, computed from each input's own covariance);
* for ``empirical`` architectures, one finite network (ntklib's ``arch.module(in_shape, seed=i)``
  in float64, its weights transposed into neural-tangents' layout): ``<name>/p<j>/W`` and
  ``<name>/p<j>/b`` (ntklib's layout) for the j-th layer with parameters, ``<name>/f_1`` =
  neural-tangents' ``apply_fn(params, x1)``, and ``<name>/emp_ntk_11`` (n1, n1, k, k),
  ``<name>/emp_ntk_12`` = ``empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0)`` with
  ``implementation=JACOBIAN_CONTRACTION``.

The script prints ntklib's largest relative deviation per architecture, so one run in the
reference venv is already a cross-check.
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
from make_nt_reference import nt_layer as nt_dense_or_activation  # noqa: E402
from make_nt_reference import relative_error  # noqa: E402

OUT = ROOT / "tests" / "library" / "data" / "nt_conv_reference.npz"


def conv(out, k, stride=None, padding="VALID", W_std=1.0, b_std=0.0, parameterization="ntk"):
    k = list(k) if isinstance(k, (tuple, list)) else [k]
    stride = [1] * len(k) if stride is None else (list(stride) if isinstance(stride, (tuple, list)) else [stride])
    return {"layer": "Conv", "out_channels": out, "kernel_size": k, "stride": stride, "padding": padding,
            "W_std": W_std, "b_std": b_std, "parameterization": parameterization}


def pool(window, stride=None, padding="VALID"):
    window = list(window) if isinstance(window, (tuple, list)) else [window]
    stride = window if stride is None else (list(stride) if isinstance(stride, (tuple, list)) else [stride])
    return {"layer": "AvgPool", "window": window, "stride": stride, "padding": padding}


def dense(width, W_std=1.0, b_std=0.0, parameterization="ntk"):
    return {"layer": "Dense", "width": width, "W_std": W_std, "b_std": b_std, "parameterization": parameterization}


RELU, GAP, FLAT = {"layer": "Relu"}, {"layer": "GlobalAvgPool"}, {"layer": "Flatten"}
GELU, ERF = {"layer": "Gelu"}, {"layer": "Erf", "a": 1.2, "b": 0.8, "c": 0.1}


def architectures() -> list[dict]:
    a = []
    add = lambda name, dim, layers, empirical=False: a.append(
        {"name": name, "dim": dim, "layers": layers, "empirical": empirical})
    # ---- 1-D (n, 3, 9)
    add("c1_valid_relu_flatten", 1, [conv(6, 3, W_std=1.5, b_std=0.1), RELU, conv(6, 2, W_std=1.2, b_std=0.2), RELU,
                                     FLAT, dense(1, 1.1, 0.1)], empirical=True)
    add("c1_same_erf_gap_std", 1, [conv(6, 3, padding="SAME", W_std=1.3, b_std=0.2, parameterization="standard"), ERF,
                                   conv(5, 3, padding="SAME", W_std=1.1, b_std=0.0, parameterization="standard"), ERF,
                                   GAP, dense(2, 1.0, 0.1, "standard")], empirical=True)
    add("c1_circular_gelu_flatten_nobias", 1, [conv(6, 4, padding="CIRCULAR", W_std=1.4, b_std=None), GELU,
                                              conv(6, 3, padding="CIRCULAR", W_std=1.2, b_std=None), GELU,
                                              FLAT, dense(1, 1.0, None)], empirical=True)
    add("c1_stride2_relu_gap", 1, [conv(6, 3, stride=2, padding="SAME", W_std=1.5, b_std=0.1), RELU,
                                   conv(6, 2, stride=2, W_std=1.4, b_std=0.1), RELU, GAP, dense(1, 1.2, 0.0)])
    add("c1_avgpool_flatten", 1, [conv(6, 3, padding="SAME", W_std=1.5, b_std=0.1), RELU, pool(2),
                                  conv(6, 2, W_std=1.3, b_std=0.1), RELU, FLAT, dense(1)])
    add("c1_avgpool_circular_overlap_gap", 1, [conv(6, 3, W_std=1.5, b_std=0.1), GELU, pool(3, 1, "CIRCULAR"),
                                               conv(6, 3, padding="SAME", W_std=1.2, b_std=0.2), ERF, GAP, dense(1)])
    add("c1_avgpool_same_stride_std", 1, [conv(6, 2, W_std=1.4, b_std=0.1, parameterization="standard"), RELU,
                                          pool(3, 2, "SAME"), conv(6, 2, stride=2, padding="SAME", W_std=1.1,
                                                                   b_std=0.1, parameterization="standard"),
                                          RELU, FLAT, dense(1, 1.0, 0.1, "standard")])
    add("c1_ends_on_conv", 1, [conv(6, 3, padding="SAME", W_std=1.5, b_std=0.1), RELU, conv(6, 2, W_std=1.2)])
    add("c1_trunk_dense_head_ntk", 1, [conv(8, 3, W_std=1.5, b_std=0.1), RELU, conv(8, 3, padding="SAME", W_std=1.4,
                                                                                b_std=0.1), RELU, FLAT,
                                       dense(16, 1.3, 0.1), RELU, dense(16, 1.2, 0.2), ERF, dense(3, 1.0, 0.1)])
    add("c1_trunk_dense_head_std", 1, [conv(8, 3, W_std=1.5, b_std=0.1, parameterization="standard"), RELU,
                                       conv(8, 3, padding="SAME", W_std=1.4, b_std=0.0, parameterization="standard"),
                                       GELU, GAP, dense(16, 1.3, 0.1, "standard"), RELU,
                                       dense(1, 1.2, 0.2, "standard")], empirical=True)
    add("c1_every_activation", 1, [conv(6, 3, padding="SAME", W_std=1.4, b_std=0.1),
                                   {"layer": "LeakyRelu", "alpha": 0.1}, conv(6, 3, W_std=1.2, b_std=0.2),
                                   {"layer": "ABRelu", "a": -1.0, "b": 1.0},
                                   conv(6, 2, padding="CIRCULAR", W_std=1.1, b_std=0.1),
                                   {"layer": "Sin", "a": 1.1, "b": 0.9, "c": 0.3}, conv(6, 2, W_std=1.3),
                                   {"layer": "Identity"}, conv(6, 2, W_std=1.2, b_std=0.1),
                                   {"layer": "ABRelu", "a": -0.4, "b": 1.2}, FLAT, dense(1)])
    add("c1_tanh_quadrature_gap", 1, [conv(6, 3, W_std=1.5, b_std=0.1),
                                      {"layer": "Tanh", "deg": 24, "derivative": "closed"}, GAP, dense(1, 1.0, 0.1)])
    add("c1_gap_on_inputs", 1, [GAP, dense(8, 1.4, 0.1), RELU, dense(1)])
    add("c1_flatten_on_inputs", 1, [FLAT, dense(8, 1.4, 0.1), RELU, dense(1)])
    # ---- 2-D (n, 2, 6, 5)
    add("c2_same_relu_gap", 2, [conv(6, (3, 3), padding="SAME", W_std=1.5, b_std=0.1), RELU,
                                conv(6, (3, 3), padding="SAME", W_std=1.4, b_std=0.1), RELU, GAP,
                                dense(1, 1.1, 0.0)], empirical=True)
    add("c2_valid_stride_relu_flatten_std", 2, [conv(6, (3, 2), stride=(2, 1), W_std=1.5, b_std=0.1,
                                                     parameterization="standard"), RELU,
                                                conv(6, (2, 2), W_std=1.3, b_std=0.0, parameterization="standard"),
                                                RELU, FLAT, dense(1, 1.1, 0.1, "standard")], empirical=True)
    add("c2_circular_erf_gap", 2, [conv(6, (3, 2), padding="CIRCULAR", W_std=1.4, b_std=0.2), ERF,
                                   conv(6, (2, 3), stride=(1, 2), padding="CIRCULAR", W_std=1.2, b_std=0.1), ERF,
                                   GAP, dense(1)])
    add("c2_avgpool_same_gelu_flatten", 2, [conv(6, (3, 3), padding="SAME", W_std=1.5, b_std=0.1), GELU,
                                            pool((2, 2), None, "SAME"), conv(6, (2, 2), W_std=1.3, b_std=0.1), GELU,
                                            FLAT, dense(2, 1.0, 0.1)], empirical=True)
    add("c2_avgpool_valid_stride1_gap", 2, [conv(6, (2, 2), W_std=1.5, b_std=0.1), RELU, pool((2, 3), (1, 1)),
                                            conv(6, (2, 2), padding="SAME", W_std=1.2, b_std=0.1), RELU, GAP,
                                            dense(1)])
    add("c2_myrtle_dense_head", 2, [conv(8, (3, 3), padding="SAME", W_std=math.sqrt(2), b_std=0.0), RELU,
                                    conv(8, (3, 3), padding="SAME", W_std=math.sqrt(2), b_std=0.0), RELU,
                                    pool((2, 2)), conv(8, (3, 3), padding="SAME", W_std=math.sqrt(2), b_std=0.0), RELU,
                                    GAP, dense(16, 1.3, 0.1), RELU, dense(1, 1.0, 0.0)])
    add("c2_ends_on_conv", 2, [conv(6, (3, 3), padding="SAME", W_std=1.5, b_std=0.1), RELU,
                               conv(6, (2, 2), W_std=1.2, b_std=0.1)])
    return a


def inputs():
    rng = np.random.default_rng(20240613)
    x1 = rng.standard_normal((5, 3, 9)) * np.array([1.0, 0.5, 2.0, 1.0, 1.0])[:, None, None]
    x1[3], x1[4] = x1[0], -x1[1]
    x2 = rng.standard_normal((3, 3, 9))
    x2[1] = x1[2]
    y1 = rng.standard_normal((4, 2, 6, 5)) * np.array([1.0, 1.5, 0.7, 1.0])[:, None, None, None]
    y1[3] = y1[1]
    y2 = rng.standard_normal((3, 2, 6, 5))
    y2[0] = -y1[2]
    return {1: (x1, x2), 2: (y1, y2)}


# ---------------------------------------------------------------------------------------------
# The same architecture in both libraries
# ---------------------------------------------------------------------------------------------
def nt_layer(spec, stax, jnp):
    kind = spec["layer"]
    if kind == "Conv":
        return stax.Conv(spec["out_channels"], tuple(spec["kernel_size"]), tuple(spec["stride"]), spec["padding"],
                         W_std=spec["W_std"], b_std=spec["b_std"], parameterization=spec["parameterization"])
    if kind == "AvgPool":
        return stax.AvgPool(tuple(spec["window"]), tuple(spec["stride"]), spec["padding"])
    if kind == "GlobalAvgPool":
        return stax.GlobalAvgPool()
    if kind == "Flatten":
        return stax.Flatten()
    return nt_dense_or_activation(spec, stax, jnp)


def ntklib_arch(layers):
    import ntklib as nk
    from make_nt_reference import ntklib_layer
    out = []
    for s in layers:
        kind = s["layer"]
        if kind == "Conv":
            out.append(nk.Conv(s["out_channels"], tuple(s["kernel_size"]), tuple(s["stride"]), s["padding"],
                               W_std=s["W_std"], b_std=s["b_std"], parameterization=s["parameterization"]))
        elif kind == "AvgPool":
            out.append(nk.AvgPool(tuple(s["window"]), tuple(s["stride"]), s["padding"]))
        elif kind in ("GlobalAvgPool", "Flatten"):
            out.append(getattr(nk, kind)())
        else:
            out.append(ntklib_layer(s))
    return nk.serial(*out)


def channel_last(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, 1, -1)


def to_ntklib_order(k: np.ndarray, dim: int) -> np.ndarray:
    """neural-tangents' (n1, [n2,] H, H', W, W') -> ntklib's (n1, [n2,] H, W, H', W'); others unchanged."""
    if dim == 1 or k.ndim < 5:
        return k
    nb = k.ndim - 4
    return k.transpose(tuple(range(nb)) + (nb, nb + 2, nb + 1, nb + 3))


def nt_params(net, in_shape, jnp):
    """neural-tangents' parameters from ntklib's finite network (module docstring for the layouts), and
    ntklib's own weights to store: ``{"p<j>/W": ..., "p<j>/b": ...}``."""
    import torch

    import ntklib as nk
    shapes, x = [], torch.zeros((1,) + tuple(in_shape), dtype=torch.float64)
    for m in net:  # the per-input shape entering each module
        shapes.append(tuple(x.shape[1:]))
        x = m(x)
    params, stored, flattened, j = [], {}, None, 0
    for m, shape in zip(net, shapes):
        if isinstance(m, nk.FlattenModule):
            flattened = shape  # (C, *S): the order of the entries until a Dense reads them
        if isinstance(m, (nk.ConvModule, nk.DenseModule)):
            W = m.weight.detach().numpy()
            b = None if m.bias is None else m.bias.detach().numpy()
            if isinstance(m, nk.ConvModule):  # (out, in, *F) -> (*F, in, out); bias (1, .., 1, out)
                nd = W.ndim - 2
                Wn = W.transpose(tuple(range(2, 2 + nd)) + (1, 0))
                bn = None if b is None else b.reshape((1,) * (nd + 1) + (-1,))
            else:  # (out, in) -> (in, out), the inputs of a flattened (C, *S) reordered to (*S, C)
                Wn = W
                if flattened is not None:
                    Wn = W.reshape((W.shape[0],) + flattened)
                    Wn = Wn.transpose((0,) + tuple(range(2, len(flattened) + 1)) + (1,)).reshape(W.shape[0], -1)
                    flattened = None
                Wn = Wn.T
                bn = None if b is None else b[None, :]
            params.append((jnp.asarray(Wn), None if bn is None else jnp.asarray(bn)))
            stored[f"p{j}/W"] = W.copy()
            if b is not None:
                stored[f"p{j}/b"] = b.copy()
            j += 1
        else:
            params.append(())
    return params, stored


def main():
    mods = import_neural_tangents(x64=True)
    if mods is None:
        sys.exit("neural-tangents and jax are needed: see benchmarks/README.md for the reference venv.")
    nt, stax, jax, jnp = mods
    import torch
    torch.set_default_dtype(torch.float64)
    impl = nt.NtkImplementation

    xs = inputs()
    archs = architectures()
    data = {"x1_1d": xs[1][0], "x2_1d": xs[1][1], "x1_2d": xs[2][0], "x2_2d": xs[2][1],
            "specs": np.array(json.dumps(archs)), "versions": np.array(json.dumps(versions()))}
    print("versions:", versions())
    print(f"{'architecture':36s} {'nngp_11':>9s} {'ntk_11':>9s} {'nngp_12':>9s} {'ntk_12':>9s} {'cov1':>9s} {'emp_ntk':>9s}")
    for seed, arch in enumerate(archs):
        name, dim = arch["name"], arch["dim"]
        x1, x2 = xs[dim]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ElementwiseNumerical warns on construction
            init_fn, apply_fn, kernel_fn = stax.serial(*[nt_layer(s, stax, jnp) for s in arch["layers"]])
        j1, j2 = jnp.asarray(channel_last(x1)), jnp.asarray(channel_last(x2))
        k11 = kernel_fn(j1, None, None)  # the whole neural-tangents Kernel, with its batch diagonal cov1
        k12 = kernel_fn(j1, j2, ("nngp", "ntk"))
        out = {"nngp_11": k11.nngp, "ntk_11": k11.ntk, "nngp_12": k12.nngp, "ntk_12": k12.ntk, "cov1": k11.cov1}
        out = {key: to_ntklib_order(np.asarray(v, dtype=np.float64), dim) for key, v in out.items()}

        ours = ntklib_arch(arch["layers"])
        t1, t2 = torch.as_tensor(x1), torch.as_tensor(x2)
        q11, q12 = ours.kernel(t1), ours.kernel(t1, t2)
        errs = [relative_error(q11.nngp.numpy(), out["nngp_11"]), relative_error(q11.ntk.numpy(), out["ntk_11"]),
                relative_error(q12.nngp.numpy(), out["nngp_12"]), relative_error(q12.ntk.numpy(), out["ntk_12"]),
                relative_error(q11.var1.numpy(), out["cov1"])]

        emp_err = float("nan")
        if arch["empirical"]:
            in_shape = tuple(x1.shape[1:])
            net = ours.module(in_shape, seed=seed, dtype=torch.float64, device="cpu")
            params, stored = nt_params(net, in_shape, jnp)
            for key, v in stored.items():
                out[key] = v
            f1 = np.asarray(apply_fn(params, j1))  # (n1, k)
            out["f_1"] = f1
            fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                                             implementation=impl.JACOBIAN_CONTRACTION))
            out["emp_ntk_11"] = np.asarray(fn(j1, None, params))
            out["emp_ntk_12"] = np.asarray(fn(j1, j2, params))
            assert relative_error(net(t1).detach().numpy(), f1) < 1e-12, f"{name}: forward passes differ"
            import ntklib as nk
            emp_ours = nk.empirical_ntk(net, t1, t2, mode="full", implementation="jacobian").numpy()
            emp_err = relative_error(emp_ours, out["emp_ntk_12"])
        for key, v in out.items():
            data[f"{name}/{key}"] = v
        print(f"{name:36s} " + " ".join(f"{e:9.1e}" for e in errs + [emp_err]))

    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT.relative_to(ROOT)} ({os.path.getsize(OUT) / 1024:.0f} KiB, {len(archs)} architectures)")


if __name__ == "__main__":
    main()
