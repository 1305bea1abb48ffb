#!/usr/bin/env python
"""Regenerate the slow sweeps of notebook 07_real_data: solutions/07_real_data/real_data_results.json.

The notebook recomputes a subset of these numbers live (the same seeds and settings, read from the file's
"settings") and checks them against the file; this script recomputes all of them:

  table     NNGP/NTK kernel classification (one-hot targets, argmax) of ReLU networks of depth 1-3 on
            MNIST-1D, MNIST-1D shuffled and digits: validation curve over diag_reg (fit on the first
            n - n_val training points, validate on the last n_val), test accuracy at the best; the
            NTK-SVM (scikit-learn's SVC on the precomputed NTK, C chosen the same way)
  depth     the same classification (diag_reg chosen by validation) against the depth, 1-32
  curves    learning curves: test MSE and accuracy against the number of training points (disjoint
            subsets of the training set, averaged), the spectrum of the 4000-point training kernel
            (eigenvalues / n and the power of the centred one-hot targets along each eigenvector) and the
            eigenlearning prediction from it (ntklib.spectral.learning_curve)
  networks  one-hidden-layer ReLU networks trained by full-batch gradient descent (ntklib.training.
            train_network, centred so that f_0 = 0) on 1000 MNIST-1D signals at several widths, test
            accuracy and MSE along training, next to the infinite-width NTK's gradient descent in
            closed form at the same steps
  cntk      convolutional kernels (needs ntklib.Conv): two circular 1-D convolutions with ReLU, then a
            global average pool or a flatten, on standard and shuffled MNIST-1D (the first
            cntk_n_train training signals), NNGP and NTK classification with diag_reg chosen on
            validation, accuracy against the number of training signals, and a small subset that the
            notebook recomputes live (about 20 CPU minutes: the pooled kernel needs every pair of positions)

Usage (minutes to tens of minutes on one CPU core; float64 throughout, deterministic):

    .venv/bin/python scripts/precompute_07_real_data.py                 # everything
    .venv/bin/python scripts/precompute_07_real_data.py --only networks # one part (the others are kept)
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import ntklib as nk  # noqa: E402
from ntklib import dynamics, spectral  # noqa: E402
from ntklib.data import digits, mnist1d  # noqa: E402
from ntklib.regression import kernel_regression  # noqa: E402

OUT = REPO / "solutions" / "07_real_data" / "real_data_results.json"

SETTINGS = {
    "W_std": math.sqrt(2.0),
    "b_std": 0.1,
    "activation": "relu",
    "diag_regs": [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0],
    "svm_C": [0.1, 1.0, 10.0, 100.0],
    "validation_fraction": 0.25,
    "table_depths": [1, 2, 3],
    "sweep_depths": [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128],
    "curve_depth": 2,
    "curve_sizes": [125, 250, 500, 1000, 2000, 4000],
    "curve_diag_reg": 1e-4,
    "net_n_train": 1000,
    "net_depth": 1,
    "net_widths": [64, 256, 1024, 4096],
    "net_seeds": {"64": [0, 1], "256": [0, 1], "1024": [0, 1], "4096": [0]},
    "net_steps": 2000,
    "net_record_every": 50,
    "net_learning_rate_factor": 1.0,
    "cntk_depth": 2,
    "cntk_kernel_size": 5,
    "cntk_channels": 64,
    "cntk_n_train": 2000,
    "cntk_sizes": [125, 250, 500, 1000, 2000],
    "cntk_live_n_train": 100,
    "cntk_live_n_test": 200,
}


def mlp(depth: int, width: int = 512, outputs: int = 1):
    """ReLU network with ``depth`` hidden layers, W_std = sqrt(2), b_std = 0.1 (the notebook's architecture)."""
    w, b = SETTINGS["W_std"], SETTINGS["b_std"]
    layers = []
    for _ in range(depth):
        layers += [nk.Dense(width, w, b), nk.Relu()]
    return nk.serial(*layers, nk.Dense(outputs, w, b))


def datasets():
    return {"mnist1d": mnist1d(device="cpu"), "mnist1d_shuffled": mnist1d(shuffle=True, device="cpu"),
            "digits": digits(seed=0, device="cpu")}


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    return float((scores.argmax(1) == labels).double().mean())


def kernels(arch, ds, get=("nngp", "ntk")):
    """Train-train and test-train blocks of each kernel, from one call on train + test."""
    n = ds.x_train.shape[0]
    k = arch.kernel(torch.cat([ds.x_train, ds.x_test]), get=get)
    return {g: (getattr(k, g)[:n, :n].clone(), getattr(k, g)[n:, :n].clone()) for g in get}


def validate(k_train_train, labels, y, n_val, diag_regs):
    """Validation accuracy of each diag_reg: fit on the first n - n_val points, predict the last n_val."""
    m = k_train_train.shape[0] - n_val
    accs = []
    for reg in diag_regs:
        pred = kernel_regression(k_train_train[:m, :m], k_train_train[m:, :m], y[:m], diag_reg=reg)
        accs.append(accuracy(pred, labels[m:]))
    best = max(range(len(diag_regs)), key=lambda i: (accs[i], diag_regs[i]))  # ties: the larger diag_reg
    return accs, diag_regs[best]


def svm_validate(k_train_train, labels, n_val, Cs):
    from sklearn.svm import SVC

    m = k_train_train.shape[0] - n_val
    K, lab = k_train_train.numpy(), labels.numpy()
    accs = [float((SVC(kernel="precomputed", C=C).fit(K[:m, :m], lab[:m]).predict(K[m:, :m]) == lab[m:]).mean())
            for C in Cs]
    best = max(range(len(Cs)), key=lambda i: (accs[i], -Cs[i]))  # ties: the smaller C (more regularized)
    return accs, Cs[best]


def classify(k_pair, ds, n_val, diag_regs):
    ktt, kst = k_pair
    val, reg = validate(ktt, ds.labels_train, ds.y_train, n_val, diag_regs)
    test = accuracy(kernel_regression(ktt, kst, ds.y_train, diag_reg=reg), ds.labels_test)
    return {"validation_accuracy": val, "diag_reg": reg, "test_accuracy": test}


def part_table(out):
    from sklearn.svm import SVC

    res = {}
    for name, ds in datasets().items():
        n_val = int(SETTINGS["validation_fraction"] * ds.x_train.shape[0])
        res[name] = {"n_train": ds.x_train.shape[0], "n_test": ds.x_test.shape[0], "n_val": n_val}
        for depth in SETTINGS["table_depths"]:
            ks = kernels(mlp(depth), ds)
            for get in ("nngp", "ntk"):
                res[name][f"{get}_depth{depth}"] = classify(ks[get], ds, n_val, SETTINGS["diag_regs"])
                print(name, get, depth, res[name][f"{get}_depth{depth}"]["test_accuracy"], flush=True)
            ktt, kst = ks["ntk"]
            val, C = svm_validate(ktt, ds.labels_train, n_val, SETTINGS["svm_C"])
            svc = SVC(kernel="precomputed", C=C).fit(ktt.numpy(), ds.labels_train.numpy())
            test = float((svc.predict(kst.numpy()) == ds.labels_test.numpy()).mean())
            res[name][f"ntk_svm_depth{depth}"] = {"validation_accuracy": val, "C": C, "test_accuracy": test}
            print(name, "svm", depth, test, flush=True)
    out["table"] = res


def part_depth(out):
    res = {"depths": SETTINGS["sweep_depths"]}
    for name, ds in datasets().items():
        if name == "mnist1d_shuffled":  # the MLP kernel does not see the shuffle (table: identical numbers)
            continue
        n_val = int(SETTINGS["validation_fraction"] * ds.x_train.shape[0])
        rows = {"nngp": [], "ntk": [], "nngp_diag_reg": [], "ntk_diag_reg": []}
        for depth in SETTINGS["sweep_depths"]:
            ks = kernels(mlp(depth), ds)
            for get in ("nngp", "ntk"):
                r = classify(ks[get], ds, n_val, SETTINGS["diag_regs"])
                rows[get].append(r["test_accuracy"])
                rows[get + "_diag_reg"].append(r["diag_reg"])
            print(name, depth, rows["nngp"][-1], rows["ntk"][-1], flush=True)
        res[name] = rows
    out["depth"] = res


def part_curves(out):
    ds = mnist1d(device="cpu")
    arch = mlp(SETTINGS["curve_depth"])
    ks = kernels(arch, ds)
    y = ds.y_train - 0.1  # centred one-hot targets (argmax unchanged; no constant mode in the MSE)
    y_test = ds.y_test - 0.1
    reg = SETTINGS["curve_diag_reg"]
    res = {"n": SETTINGS["curve_sizes"], "diag_reg": reg, "depth": SETTINGS["curve_depth"]}
    for get in ("nngp", "ntk"):
        ktt, kst = ks[get]
        mse, acc = [], []
        for n in SETTINGS["curve_sizes"]:
            chunks = min(8, ds.x_train.shape[0] // n)  # disjoint subsets of n training points
            m_s, a_s = [], []
            for c in range(chunks):
                idx = slice(c * n, (c + 1) * n)
                pred = kernel_regression(ktt[idx, idx], kst[:, idx], y[idx], diag_reg=reg)  # (n_test, 10)
                m_s.append(float(((pred - y_test) ** 2).sum(1).mean()))
                a_s.append(accuracy(pred, ds.labels_test))
            mse.append(m_s)
            acc.append(a_s)
        s = spectral.eigendecomposition(ktt)  # decreasing eigenvalues of the 4000-point kernel
        n = ktt.shape[0]
        power = ((s.eigenvectors.T @ y) ** 2).sum(1) / n  # (n,) target power per eigen-direction, sums to |y|^2/n
        tail = power.flip(0).cumsum(0).flip(0)  # tail[k] = sum_{i >= k} power_i (0-based): the power beyond the top k
        # eigenlearning (notebook 06, spectral.learning_curve) with the pool's spectrum: lambda_i = mu_i / n, p_i
        lam = s.eigenvalues.clamp_min(0.0) / n
        n_grid = sorted({int(round(v)) for v in np.geomspace(50, 2000, 25)} | set(SETTINGS["curve_sizes"][:-1]))
        theory = spectral.learning_curve(lam, power, n_grid, ridge=reg * float(lam.sum()))
        grid = sorted({int(round(v)) for v in np.geomspace(1, n - 1, 60)})
        res[get] = {"test_mse": mse, "test_accuracy": acc, "trace_over_n": float(torch.diagonal(ktt).mean()),
                    "spectrum_n": n, "spectrum_k": grid, "eigenvalue": [float(s.eigenvalues[k - 1] / n) for k in grid],
                    "tail_power": [float(tail[k]) for k in grid], "total_power": float(tail[0]),
                    "eigenlearning_n": n_grid, "eigenlearning_mse": theory.test_mse.tolist()}
        print(get, [float(np.mean(m)) for m in mse], flush=True)
    out["curves"] = res


def part_networks(out):
    S = SETTINGS
    ds = mnist1d(n_train=S["net_n_train"], device="cpu")
    y, y_test = ds.y_train - 0.1, ds.y_test - 0.1  # centred one-hot
    arch_inf = mlp(S["net_depth"])
    k_tt = arch_inf.kernel(ds.x_train).ntk
    k_st = arch_inf.kernel(ds.x_test, ds.x_train).ntk
    N = y.numel()  # mean loss over n x 10 entries
    eta = S["net_learning_rate_factor"] * N / float(torch.linalg.eigvalsh(k_tt)[-1])
    record = list(range(0, S["net_steps"] + 1, S["net_record_every"]))
    kernel_pred = dynamics.discrete_gradient_descent_mse(k_tt, y, torch.tensor(record), eta, k_test_train=k_st).test
    res = {"learning_rate": eta, "steps": record, "widths": S["net_widths"],
           "kernel": {"test_accuracy": [accuracy(p, ds.labels_test) for p in kernel_pred],
                      "test_mse": [float(((p - y_test) ** 2).sum(1).mean()) for p in kernel_pred],
                      "converged_accuracy": accuracy(kernel_regression(k_tt, k_st, y), ds.labels_test)},
           "networks": {}}
    for width in S["net_widths"]:
        runs = []
        for seed in S["net_seeds"][str(width)]:
            t0 = time.process_time()
            hist = nk.train_network(mlp(S["net_depth"], width, outputs=10), ds.x_train, y, learning_rate=eta, steps=S["net_steps"],
                                    x_test=ds.x_test, y_test=y_test, record_steps=record, ntk_steps=[0],
                                    ntk_inputs=ds.x_train[:8],
                                    center=True, seed=seed, progress=False)
            runs.append({"seed": seed, "test_accuracy": [accuracy(f, ds.labels_test) for f in hist.fx_test],
                         "test_mse": [float(((f - y_test) ** 2).sum(1).mean()) for f in hist.fx_test],
                         # root-mean-square distance of the test outputs from the infinite-width prediction
                         "rms_to_kernel": [float(((f - p) ** 2).mean().sqrt()) for f, p in zip(hist.fx_test, kernel_pred)],
                         "train_mse": [float(((f - y) ** 2).sum(1).mean()) for f in hist.fx_train],
                         "cpu_s": time.process_time() - t0})
            print("width", width, "seed", seed, runs[-1]["test_accuracy"][-1], f"{runs[-1]['cpu_s']:.0f}s", flush=True)
        res["networks"][str(width)] = runs
    out["networks"] = res


def cnn(readout: str = "gap", depth: int | None = None):
    """``depth`` circular 1-D convolutions (window cntk_kernel_size) with ReLU, then GlobalAvgPool or Flatten, Dense."""
    S = SETTINGS
    w, b = S["W_std"], S["b_std"]
    layers = []
    for _ in range(S["cntk_depth"] if depth is None else depth):
        layers += [nk.Conv(S["cntk_channels"], S["cntk_kernel_size"], padding="CIRCULAR", W_std=w, b_std=b), nk.Relu()]
    layers += [nk.GlobalAvgPool() if readout == "gap" else nk.Flatten(), nk.Dense(1, w, b)]
    return nk.serial(*layers)


def part_cntk(out):
    if not hasattr(nk, "Conv"):
        raise SystemExit("the cntk part needs ntklib's convolutional layers (nk.Conv, nk.GlobalAvgPool, nk.Flatten)")
    S = SETTINGS
    res = {"n_train": S["cntk_n_train"], "sizes": S["cntk_sizes"]}
    for shuffle in (False, True):
        ds = mnist1d(shuffle=shuffle, n_train=S["cntk_n_train"], device="cpu")
        x_tr, x_te = ds.x_train[:, None, :], ds.x_test[:, None, :]  # (n, 1, 40): one channel, 40 positions
        n_val = int(S["validation_fraction"] * ds.x_train.shape[0])
        name = "mnist1d_shuffled" if shuffle else "mnist1d"
        res[name] = {}
        for readout in ("gap", "flatten"):
            arch = cnn(readout)
            t0 = time.process_time()
            k_tt, k_st = arch.kernel(x_tr), arch.kernel(x_te, x_tr)
            cpu = time.process_time() - t0
            for get in ("nngp", "ntk"):
                ktt, kst = getattr(k_tt, get), getattr(k_st, get)
                r = classify((ktt, kst), ds, n_val, S["diag_regs"])
                r["cpu_s_kernels"] = cpu
                r["accuracy_vs_n"] = [accuracy(kernel_regression(ktt[:n, :n], kst[:, :n], ds.y_train[:n],
                                                                 diag_reg=r["diag_reg"]), ds.labels_test)
                                      for n in S["cntk_sizes"]]
                m, t = S["cntk_live_n_train"], S["cntk_live_n_test"]
                r["live_subset_accuracy"] = accuracy(kernel_regression(ktt[:m, :m], kst[:t, :m], ds.y_train[:m],
                                                                       diag_reg=r["diag_reg"]), ds.labels_test[:t])
                res[name][f"{get}_{readout}"] = r
                print(name, readout, get, r["test_accuracy"], r["accuracy_vs_n"], f"{cpu:.0f}s", flush=True)
    out["cntk"] = res


PARTS = {"table": part_table, "depth": part_depth, "curves": part_curves, "networks": part_networks, "cntk": part_cntk}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(PARTS), help="comma-separated parts: " + ", ".join(PARTS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(args.threads)
    path = Path(args.out)
    out = json.loads(path.read_text()) if path.is_file() else {}
    for name in args.only.split(","):
        if name not in PARTS:
            raise SystemExit(f"unknown part {name!r}; choose from {', '.join(PARTS)}")
        t0 = time.process_time()
        PARTS[name](out)
        out.setdefault("cpu_seconds", {})[name] = round(time.process_time() - t0, 1)
        out["settings"] = SETTINGS
        import mnist1d as _m1d
        import sklearn

        out["versions"] = {"python": platform.python_version(), "torch": torch.__version__, "ntklib": nk.__version__,
                           "scikit-learn": sklearn.__version__,
                           "mnist1d": getattr(_m1d, "__version__", "0.0.2")}
        path.write_text(json.dumps(out, indent=None, separators=(",", ":")) + "\n")
        print(f"[{name}] done in {out['cpu_seconds'][name]} s of CPU; wrote {path}", flush=True)


if __name__ == "__main__":
    main()
