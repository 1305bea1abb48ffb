"""ntklib.data: synthetic sets and the bundled digits, checked against their definitions."""
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import ntklib as nk
from ntklib import data

DT = torch.float64


def _close(actual, expected, rtol, atol):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol)


def test_circle_points_equispaced_and_random():
    x, phi = data.circle_points(12, radius=2.0, device="cpu")
    assert x.shape == (12, 2) and x.dtype == DT
    _close(x.norm(dim=1), torch.full((12,), 2.0, dtype=DT), rtol=1e-14, atol=0)
    _close(phi, 2 * math.pi * np.arange(12) / 12, rtol=0, atol=1e-14)
    _close(x[:, 0], 2 * torch.cos(phi), rtol=0, atol=1e-14)
    xr, phr = data.circle_points(500, equispaced=False, seed=3, device="cpu")
    xr2, _ = data.circle_points(500, equispaced=False, seed=3, device="cpu")
    assert torch.equal(xr, xr2)
    assert 0 <= float(phr.min()) and float(phr.max()) < 2 * math.pi
    # uniform angles: the mean of (cos, sin) is 0 within 5 standard errors (sd = 1/sqrt(2))
    assert float(xr.mean(0).abs().max()) < 5 / math.sqrt(2 * 500)


def test_sphere_points_are_uniform_on_the_sphere():
    m, d = 4000, 5
    x = data.sphere_points(m, d, radius=3.0, seed=1, device="cpu")
    _close(x.norm(dim=1), torch.full((m,), 3.0, dtype=DT), rtol=1e-13, atol=0)
    # E[x] = 0 and E[x x^T] = r^2/d I; standard errors from the sample
    se = x.std(0) / math.sqrt(m)
    assert bool((x.mean(0).abs() < 5 * se).all())
    second = torch.einsum("si,sj->sij", x, x)  # (m, d, d)
    se2 = second.std(0) / math.sqrt(m)
    assert bool(((second.mean(0) - 9.0 / d * torch.eye(d, dtype=DT)).abs() < 5 * se2 + 1e-12).all())


def test_sine_regression_targets_and_noise():
    ds = data.sine_regression(200, 50, frequency=2.0, noise=0.1, seed=0, device="cpu")
    assert ds.x_train.shape == (200, 1) and ds.x_test.shape == (50, 1)
    assert bool((ds.x_train[1:, 0] >= ds.x_train[:-1, 0]).all())
    _close(ds.y_test, torch.sin(2.0 * ds.x_test[:, 0]), rtol=0, atol=1e-15)
    resid = ds.y_train - torch.sin(2.0 * ds.x_train[:, 0])
    sd = float(resid.std())
    assert abs(sd - 0.1) < 5 * 0.1 / math.sqrt(2 * 200), sd  # sd of a sample sd: sigma / sqrt(2n)
    circ = data.sine_regression(10, 5, embed="circle", device="cpu")
    _close(circ.x_train.norm(dim=1), torch.ones(10, dtype=DT), rtol=1e-14, atol=0)
    x_tr, y_tr, x_te, y_te = circ  # unpacks
    assert y_tr.shape == (10,)


def test_teacher_dataset_targets_are_the_teacher_networks_outputs():
    arch = nk.serial(nk.Dense(256, 1.5, 0.1), nk.Relu(), nk.Dense(2, 1.5, 0.1))
    ds = data.teacher_dataset(arch, 30, 10, 4, seed=0, teacher_seed=7, device="cpu")
    assert ds.x_train.shape == (30, 4) and ds.y_train.shape == (30, 2) and ds.y_test.shape == (10, 2)
    _close((ds.x_train ** 2).sum(1) / 4, torch.ones(30, dtype=DT), rtol=1e-13, atol=0)  # x.x/d = 1
    net = arch.module(4, seed=7, dtype=DT, device="cpu")
    with torch.no_grad():
        _close(ds.y_test, net(ds.x_test), rtol=1e-13, atol=1e-13)
    noisy = data.teacher_dataset(net, 30, 10, 4, seed=0, noise=0.5, device="cpu")
    assert float((noisy.y_train - ds.y_train).abs().max()) > 0.1
    _close(noisy.y_test, ds.y_test, rtol=1e-13, atol=1e-13)


def test_digits_are_bundled_standardized_and_split_reproducibly():
    ds = data.digits(seed=0, device="cpu")
    raw = load_digits()
    assert ds.x_train.shape[1] == 64 and ds.x_train.shape[0] + ds.x_test.shape[0] == raw.data.shape[0]
    assert ds.x_train.dtype == DT and ds.y_train.shape == (ds.x_train.shape[0], 10)
    _close(ds.y_train.sum(1), torch.ones(ds.x_train.shape[0], dtype=DT), rtol=0, atol=0)
    _close(ds.y_train.argmax(1), ds.labels_train, rtol=0, atol=0)
    sd = ds.x_train.std(0, unbiased=False)
    varying = sd > 0
    _close(ds.x_train.mean(0), torch.zeros(64, dtype=DT), rtol=0, atol=1e-12)
    _close(sd[varying], torch.ones(int(varying.sum()), dtype=DT), rtol=1e-12, atol=0)
    again = data.digits(seed=0, device="cpu")
    assert torch.equal(ds.x_test, again.x_test)
    # the split is a partition of the 1797 images, stratified by digit
    both = np.bincount(np.concatenate([ds.labels_train.numpy(), ds.labels_test.numpy()]), minlength=10)
    np.testing.assert_array_equal(both, np.bincount(raw.target, minlength=10))
    frac = np.bincount(ds.labels_test.numpy(), minlength=10) / both
    assert np.all(np.abs(frac - 0.25) < 0.02), frac
    # the split is scikit-learn's stratified train_test_split with random_state=seed, standardized
    # with the training statistics
    from sklearn.model_selection import train_test_split
    xr_tr, xr_te, _, _ = train_test_split(raw.data, raw.target, test_size=len(raw.data) // 4, random_state=0,
                                          stratify=raw.target)
    mu, sdr = xr_tr.mean(0), xr_tr.std(0)
    sdr = np.where(sdr > 0, sdr, 1.0)
    _close(ds.x_test, (xr_te - mu) / sdr, rtol=1e-12, atol=1e-12)


def test_digits_binary_targets_and_sizes():
    ds = data.digits(classes=(3, 8), target="binary", n_train=100, n_test=60, binary_values=(0.0, 1.0),
                     seed=1, device="cpu")
    assert ds.x_train.shape == (100, 64) and ds.x_test.shape == (60, 64) and ds.y_train.shape == (100,)
    assert set(ds.labels_train.tolist()) == {3, 8}
    _close(ds.y_train, (ds.labels_train == 8).to(DT), rtol=0, atol=0)
    centred = data.digits(classes=(0, 1, 2), center_onehot=True, device="cpu")
    _close(centred.y_train.sum(1), torch.zeros(centred.y_train.shape[0], dtype=DT), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="two classes"):
        data.digits(classes=(1, 2, 3), target="binary")
    with pytest.raises(ValueError, match="classes"):
        data.digits(classes=(1, 11))
    with pytest.raises(ValueError, match="n_train"):
        data.digits(classes=(0, 1), n_train=400, n_test=100)


# --------------------------------------------------------------------------------------------------
# MNIST-1D
# --------------------------------------------------------------------------------------------------
mnist1d_pkg = pytest.importorskip("mnist1d.data")


def test_mnist1d_is_the_packages_default_data_set_and_leaves_the_global_generators_alone():
    """Against the package's own make_dataset (an independent call), and numpy/random states untouched."""
    import random

    np.random.seed(123)
    random.seed(123)
    before_np, before_py = np.random.get_state()[1].copy(), random.getstate()
    ds = data.mnist1d(device="cpu")
    assert np.array_equal(np.random.get_state()[1], before_np) and random.getstate() == before_py
    raw = mnist1d_pkg.make_dataset(mnist1d_pkg.get_dataset_args())
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40) and ds.x_train.dtype == DT
    _close(ds.x_train, raw["x"], rtol=0, atol=0)  # the same numbers, converted to float64 (they are float64)
    _close(ds.x_test, raw["x_test"], rtol=0, atol=0)
    assert np.array_equal(ds.labels_train.numpy(), raw["y"]) and np.array_equal(ds.labels_test.numpy(), raw["y_test"])
    assert ds.labels_train.dtype == torch.int64
    # one-hot targets with the label's column set; ten classes of about 400 training signals each
    _close(ds.y_train.sum(1), np.ones(4000), rtol=0, atol=0)
    _close(ds.y_train.argmax(1), ds.labels_train, rtol=0, atol=0)
    counts = np.bincount(ds.labels_train.numpy(), minlength=10)
    assert counts.min() > 350 and counts.max() < 450, counts
    # the package standardizes all signals together: mean 0, sd 1 over train + test
    x_all = torch.cat([ds.x_train, ds.x_test])
    assert abs(float(x_all.mean())) < 1e-12 and abs(float(x_all.std(unbiased=False)) - 1) < 1e-12


def test_mnist1d_shuffled_is_the_packages_shuffled_data_set_a_fixed_permutation_of_positions():
    """shuffle=True equals the package's make_dataset(shuffle_seq=True), and is x[:, perm] of the standard set."""
    args = mnist1d_pkg.get_dataset_args()
    args.shuffle_seq = True
    raw = mnist1d_pkg.make_dataset(args)
    sh = data.mnist1d(shuffle=True, device="cpu")
    _close(sh.x_train, raw["x"], rtol=0, atol=1e-15)
    _close(sh.x_test, raw["x_test"], rtol=0, atol=1e-15)
    assert np.array_equal(sh.labels_train.numpy(), raw["y"])
    std = data.mnist1d(device="cpu")
    # recover the permutation column by column and check it is one permutation for train and test
    perm = [int(torch.argmin(((std.x_train - sh.x_train[:, [j]]) ** 2).sum(0))) for j in range(40)]
    assert sorted(perm) == list(range(40)) and perm != list(range(40))
    _close(sh.x_train, std.x_train[:, perm], rtol=0, atol=0)
    _close(sh.x_test, std.x_test[:, perm], rtol=0, atol=0)
    # a permutation of the positions leaves every dot product unchanged (to rounding)
    g_std, g_sh = std.x_train[:50] @ std.x_train[:50].T, sh.x_train[:50] @ sh.x_train[:50].T
    _close(g_sh, g_std, rtol=0, atol=64 * 40 * torch.finfo(DT).eps * float(g_std.abs().max()))


def test_mnist1d_subsets_are_nested_prefixes_and_targets_as_asked():
    full = data.mnist1d(device="cpu")
    small = data.mnist1d(n_train=100, n_test=30, target="label", device="cpu")
    assert small.x_train.shape == (100, 40) and small.x_test.shape == (30, 40) and small.y_train.shape == (100,)
    _close(small.x_train, full.x_train[:100], rtol=0, atol=0)
    _close(small.y_train, full.labels_train[:100].double(), rtol=0, atol=0)
    centred = data.mnist1d(n_train=20, n_test=5, center_onehot=True, device="cpu")
    _close(centred.y_train, full.y_train[:20] - 0.1, rtol=0, atol=1e-15)
    _close(centred.y_train.sum(1), np.zeros(20), rtol=0, atol=1e-14)
    assert data.MNIST1D_PUBLISHED_ACCURACY["standard"]["CNN"] == 0.94
    assert data.MNIST1D_PUBLISHED_ACCURACY["shuffled"]["MLP"] == data.MNIST1D_PUBLISHED_ACCURACY["standard"]["MLP"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_train=4001), "4000 training"),
    (dict(n_test=0), "n_test"),
    (dict(target="binary"), "target"),
    (dict(shuffle="yes"), "shuffle"),
])
def test_mnist1d_bad_arguments_are_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        data.mnist1d(device="cpu", **kwargs)
