"""ntklib.sklearn_kernels.NeuralKernel: scikit-learn's Kernel protocol, against ntklib's own regression,
closed-form kernels and gradients, scikit-learn's own kernels, and scikit-learn's estimator checks."""
import math
import pickle

import mpmath
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import DotProduct, WhiteKernel
from sklearn.kernel_ridge import KernelRidge
from sklearn.svm import SVC
from sklearn.utils.estimator_checks import check_estimator

import ntklib as nk
from ntklib.regression import gp_posterior, kernel_regression
from ntklib.sklearn_kernels import NeuralKernel

EPS = float(np.finfo(np.float64).eps)


def _arch(W=1.3, b=0.2):
    return nk.serial(nk.Dense(64, W, b), nk.Relu(), nk.Dense(64, W, b), nk.Erf(), nk.Dense(1, W, b))


def _data(n=30, m=12, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X, Xs = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    X[:, 0] *= 2.5  # unequal norms
    y = np.sin(X[:, 0]) + 0.3 * X[:, 1]
    return X, Xs, y


def _ntklib(arch, a, b=None, get="ntk"):
    k = arch.kernel(torch.from_numpy(a), None if b is None else torch.from_numpy(b), get=get)
    return getattr(k, get).numpy()


# --------------------------------------------------------------------------------------------------
# the kernel's values and scikit-learn's kernel properties
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_values_are_ntklibs_kernel_and_properties_hold(get):
    """k(X, Y) is arch.kernel(X, Y); k(X) equals k(X, X) to rounding; diag is the diagonal; K is PSD."""
    arch = _arch()
    X, Xs, _ = _data()
    k = NeuralKernel(arch, get)
    K, Kxy = k(X), k(Xs, X)
    assert K.shape == (30, 30) and Kxy.shape == (12, 30) and K.dtype == np.float64 and isinstance(K, np.ndarray)
    np.testing.assert_allclose(Kxy, _ntklib(arch, Xs, X, get), rtol=0, atol=0)  # the same call
    scale = float(np.abs(K).max())
    np.testing.assert_allclose(K, k(X, X), rtol=0, atol=200 * EPS * scale)  # symmetric path vs general path
    np.testing.assert_allclose(K, K.T, rtol=0, atol=0)  # mirrored by construction
    np.testing.assert_allclose(k.diag(X), np.diag(K), rtol=0, atol=50 * EPS * scale)
    assert np.linalg.eigvalsh(K).min() > -30 * EPS * np.linalg.eigvalsh(K).max()
    assert not k.is_stationary() and k.requires_vector_input
    assert k.n_dims == 0 and k.theta.shape == (0,)  # no free hyperparameter by default


def test_dense_nngp_equals_scikit_learns_dot_product_kernel_with_its_gradient():
    """Dense(W=sqrt(d), b=s) has NNGP x.x' + s^2: scikit-learn's DotProduct(sigma_0=s), values and d/dlog s."""
    X, Xs, _ = _data(d=4)
    s = 0.7
    k = NeuralKernel(nk.Dense(1, W_std=2.0, b_std=s), "nngp", b_std=s)
    ref = DotProduct(sigma_0=s)
    K, dK = k(X, eval_gradient=True)
    K_ref, dK_ref = ref(X, eval_gradient=True)
    assert dK.shape == (30, 30, 1)
    np.testing.assert_allclose(K, K_ref, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(k(Xs, X), ref(Xs, X), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dK, dK_ref, rtol=1e-10, atol=1e-12)


def test_linear_network_gradients_match_their_closed_form():
    """serial(Dense, Dense) without activation: NNGP = W^4 x.x'/d + b^2 (W^2 + 1), derivatives in log W, log b exact."""
    X, _, _ = _data(d=3)
    W, b = 1.7, 0.4
    k = NeuralKernel(nk.serial(nk.Dense(8), nk.Dense(1)), "nngp", W_std=W, b_std=b)
    K, dK = k(X, eval_gradient=True)
    G = X @ X.T / 3
    np.testing.assert_allclose(K, W ** 4 * G + b ** 2 * (W ** 2 + 1), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dK[..., 0], 4 * W ** 4 * G + 2 * b ** 2 * W ** 2, rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(dK[..., 1], 2 * b ** 2 * (W ** 2 + 1), rtol=1e-10, atol=1e-11)


def _relu_kernels_mp(x1, x2, W, b):
    """Two-layer ReLU network (Dense, Relu, Dense), NNGP and NTK from the arc-cosine closed form, in mpmath."""
    d = len(x1)
    dot = lambda a, c: mpmath.fsum(ai * ci for ai, ci in zip(a, c)) / d  # noqa: E731
    s12, s11, s22 = (W ** 2 * dot(a, c) + b ** 2 for a, c in ((x1, x2), (x1, x1), (x2, x2)))
    cos = max(min(s12 / mpmath.sqrt(s11 * s22), mpmath.mpf(1)), mpmath.mpf(-1))
    theta = mpmath.acos(cos)
    relu = mpmath.sqrt(s11 * s22) * (mpmath.sin(theta) + (mpmath.pi - theta) * cos) / (2 * mpmath.pi)
    nngp = W ** 2 * relu + b ** 2
    ntk = nngp + W ** 2 * s12 * (mpmath.pi - theta) / (2 * mpmath.pi)
    return nngp, ntk


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_relu_gradients_match_the_arc_cosine_closed_form_differentiated_in_40_digits(get):
    """dK/dlog W and dK/dlog b of a ReLU network vs mpmath.diff of the closed form (an independent implementation)."""
    X, _, _ = _data(n=6, d=3, seed=4)
    W, b = 1.5, 0.3
    arch = nk.serial(nk.Dense(8), nk.Relu(), nk.Dense(1))
    K, dK = NeuralKernel(arch, get, W_std=W, b_std=b)(X, eval_gradient=True)
    which = 0 if get == "nngp" else 1
    with mpmath.workdps(40):
        rows = [[mpmath.mpf(float(v)) for v in x] for x in X]
        for i in range(6):
            for j in range(6):
                f = lambda lw, lb: _relu_kernels_mp(rows[i], rows[j], mpmath.exp(lw), mpmath.exp(lb))[which]  # noqa: E731
                lw, lb = mpmath.log(W), mpmath.log(b)
                assert abs(float(f(lw, lb)) - K[i, j]) <= 1e-13 * abs(K[i, j]) + 1e-14
                for h, args in ((0, (1, 0)), (1, (0, 1))):
                    exact = float(mpmath.diff(f, (lw, lb), args))
                    assert abs(dK[i, j, h] - exact) <= 1e-9 * max(abs(exact), abs(K[i, j])), (i, j, h, dK[i, j, h], exact)


def test_gradient_shape_order_and_errors():
    """Free hyperparameters in the order W_std, b_std; fixed bounds and zero values are not free; Y with gradient fails."""
    X, Xs, _ = _data()
    arch = _arch()
    both = NeuralKernel(arch, W_std=1.3, b_std=0.2)
    assert [h.name for h in both.hyperparameters] == ["W_std", "b_std"]
    np.testing.assert_allclose(both.theta, np.log([1.3, 0.2]), rtol=1e-15)
    K, dK = both(X, eval_gradient=True)
    assert dK.shape == (30, 30, 2)
    np.testing.assert_allclose(K, NeuralKernel(arch)(X), rtol=0, atol=0)  # W=1.3, b=0.2 are arch's own
    only_b = NeuralKernel(arch, W_std=1.3, b_std=0.2, W_std_bounds="fixed")
    np.testing.assert_allclose(only_b(X, eval_gradient=True)[1][..., 0], dK[..., 1], rtol=0, atol=0)
    assert NeuralKernel(arch, W_std=1.3, b_std=0.0).n_dims == 1  # log 0 is -inf: b_std=0 is never free
    none = NeuralKernel(arch)(X, eval_gradient=True)[1]
    assert none.shape == (30, 30, 0)
    with pytest.raises(ValueError, match="Y is None"):
        both(X, Xs, eval_gradient=True)


def test_W_std_and_b_std_set_every_layer_without_touching_arch():
    """A value replaces every layer's W_std/b_std (a bias-free layer gets a bias); arch itself is unchanged."""
    X, _, _ = _data()
    arch = nk.serial(nk.Dense(8, 1.0, None), nk.Gelu(), nk.Dense(1, 2.0, 0.5))
    k = NeuralKernel(arch, "ntk", W_std=1.4, b_std=0.3)
    same = nk.serial(nk.Dense(8, 1.4, 0.3), nk.Gelu(), nk.Dense(1, 1.4, 0.3))
    np.testing.assert_allclose(k(X), _ntklib(same, X), rtol=0, atol=0)
    assert arch.layers[0].W_std == 1.0 and arch.layers[0].b_std is None and arch.layers[2].W_std == 2.0


# --------------------------------------------------------------------------------------------------
# scikit-learn's estimators give ntklib's predictions
# --------------------------------------------------------------------------------------------------
def test_gaussian_process_regressor_gives_ntklibs_gp_posterior():
    """GaussianProcessRegressor(NeuralKernel(arch, 'nngp'), alpha=noise): mean and covariance of gp_posterior."""
    arch = _arch()
    X, Xs, y = _data()
    Y = np.stack([y, np.cos(X[:, 1])], 1)  # two outputs
    noise = 0.05
    gp = GaussianProcessRegressor(NeuralKernel(arch, "nngp"), alpha=noise, optimizer=None).fit(X, Y)
    mean, cov = gp.predict(Xs, return_cov=True)  # (12, 2), (12, 12, 2)
    ref = gp_posterior(_ntklib(arch, X, get="nngp"), _ntklib(arch, Xs, X, "nngp"), _ntklib(arch, Xs, get="nngp"),
                       torch.from_numpy(Y), diag_reg=noise, diag_reg_absolute_scale=True)
    np.testing.assert_allclose(mean, ref.mean.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(cov[..., 0], ref.covariance.numpy(), rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(cov[..., 1], ref.covariance.numpy(), rtol=1e-8, atol=1e-11)


def test_kernel_ridge_callable_and_precomputed_give_ntklibs_kernel_regression():
    """KernelRidge(kernel=NeuralKernel) and KernelRidge('precomputed') predict kernel_regression's values."""
    arch = _arch()
    X, Xs, y = _data()
    lam = 0.3
    k = NeuralKernel(arch, "ntk")
    ref = kernel_regression(_ntklib(arch, X), _ntklib(arch, Xs, X), torch.from_numpy(y), diag_reg=lam,
                            diag_reg_absolute_scale=True).numpy()
    callable_pred = KernelRidge(kernel=k, alpha=lam).fit(X, y).predict(Xs)
    pre = KernelRidge(kernel="precomputed", alpha=lam).fit(k(X), y).predict(k(Xs, X))
    np.testing.assert_allclose(callable_pred, ref, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(pre, ref, rtol=1e-9, atol=1e-11)


def test_svc_with_the_linear_network_kernel_equals_scikit_learns_linear_svc():
    """SVC(kernel=NeuralKernel(Dense(W=sqrt(d), b=0), 'nngp')) is SVC(kernel='linear'): same decision function."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 4))
    labels = (X[:, 0] + 0.5 * X[:, 1] ** 2 > 0.3).astype(int) + (X[:, 2] > 1).astype(int)  # 3 classes
    Xs = rng.normal(size=(20, 4))
    mine = SVC(kernel=NeuralKernel(nk.Dense(1, W_std=2.0, b_std=0.0), "nngp"), C=2.0).fit(X, labels)
    ref = SVC(kernel="linear", C=2.0).fit(X, labels)
    np.testing.assert_allclose(mine.decision_function(Xs), ref.decision_function(Xs), rtol=1e-6, atol=1e-6)
    assert np.array_equal(mine.predict(Xs), ref.predict(Xs))


def test_svc_callable_and_precomputed_agree():
    """The NTK-SVM: a callable kernel and the precomputed matrices give the same classifier."""
    arch = _arch()
    X, Xs, y = _data(n=50)
    labels = np.digitize(y, [-0.5, 0.5])
    k = NeuralKernel(arch, "ntk")
    a = SVC(kernel=k, C=3.0).fit(X, labels)
    b = SVC(kernel="precomputed", C=3.0).fit(k(X), labels)
    np.testing.assert_allclose(a.decision_function(Xs), b.decision_function(k(Xs, X)), rtol=1e-8, atol=1e-9)


def test_gp_marginal_likelihood_fit_improves_it_and_stays_in_bounds():
    """With W_std, b_std free and a WhiteKernel, GaussianProcessRegressor's fit raises the log marginal likelihood."""
    arch = _arch()
    X, _, y = _data(n=40)
    kernel = NeuralKernel(arch, "nngp", W_std=1.0, b_std=0.5, W_std_bounds=(0.1, 10.0)) + WhiteKernel(0.1)
    gp = GaussianProcessRegressor(kernel, optimizer="fmin_l_bfgs_b", random_state=0).fit(X, y)
    assert gp.log_marginal_likelihood_value_ > gp.log_marginal_likelihood(kernel.theta) + 1.0
    fitted = gp.kernel_.k1
    assert 0.1 <= fitted.W_std <= 10.0 and 1e-5 <= fitted.b_std <= 1e2
    # the gradient scikit-learn's optimizer used agrees with the likelihood's slope along a random direction
    theta = gp.kernel_.theta
    lml, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    v = np.random.default_rng(0).normal(size=theta.shape)
    h = 1e-5
    slope = (gp.log_marginal_likelihood(theta + h * v) - gp.log_marginal_likelihood(theta - h * v)) / (2 * h)
    assert abs(grad @ v - slope) <= 1e-5 * max(1.0, abs(slope))


# --------------------------------------------------------------------------------------------------
# get_params / set_params / clone / pickle
# --------------------------------------------------------------------------------------------------
def test_clone_set_params_theta_and_pickle_round_trips():
    X, _, _ = _data()
    k = NeuralKernel(_arch(), "nngp", W_std=1.3, b_std=0.2, batch_size=7)
    c = clone(k)
    assert c == k and c is not k and c.get_params()["arch"] is not k.arch
    np.testing.assert_allclose(c(X), k(X), rtol=0, atol=0)
    np.testing.assert_allclose(k.clone_with_theta(k.theta)(X), k(X), rtol=1e-14, atol=1e-14)
    moved = k.clone_with_theta(np.log([1.6, 0.2]))
    assert moved != k and math.isclose(moved.W_std, 1.6, rel_tol=1e-14)
    np.testing.assert_allclose(moved(X), NeuralKernel(_arch(1.6, 0.2), "nngp")(X), rtol=1e-13, atol=1e-14)
    k2 = clone(k).set_params(get="ntk")
    np.testing.assert_allclose(k2(X), _ntklib(_arch(), X, get="ntk"), rtol=1e-13, atol=1e-14)
    back = pickle.loads(pickle.dumps(k))
    assert back == k
    np.testing.assert_allclose(back(X), k(X), rtol=0, atol=0)
    assert "NeuralKernel(" in repr(k) and "W_std=1.3" in repr(k)
    # tiles (batch_size) and the whole matrix agree to rounding
    np.testing.assert_allclose(k(X), NeuralKernel(_arch(), "nngp")(X), rtol=0, atol=200 * EPS * np.abs(k(X)).max())


def test_inputs_sparse_rows_and_input_shape():
    """Sparse rows are densified; input_shape reshapes rows (its size must match); bad arguments are named."""
    X, Xs, _ = _data()
    k = NeuralKernel(_arch())
    np.testing.assert_allclose(k(sp.csr_matrix(X)), k(X), rtol=0, atol=0)
    np.testing.assert_allclose(NeuralKernel(_arch(), input_shape=(5,))(X), k(X), rtol=0, atol=0)
    with pytest.raises(ValueError, match="input_shape"):
        NeuralKernel(_arch(), input_shape=(2, 3))(X)
    with pytest.raises(ValueError, match="NaN|infinity"):
        k(np.full((3, 5), np.nan))
    with pytest.raises(ValueError, match="get"):
        NeuralKernel(_arch(), get="cntk")(X)
    with pytest.raises(TypeError, match="arch"):
        NeuralKernel("relu")(X)
    with pytest.raises(ValueError, match="W_std_bounds"):
        NeuralKernel(_arch(), W_std=1.0, W_std_bounds=(0.0, 1.0)).hyperparameters
    with pytest.raises(ValueError, match="no layer"):
        NeuralKernel(nk.Relu(), W_std=1.0)(X)


def test_convolutional_architecture_through_input_shape():
    """Rows reshaped to (n, 1, L) give the convolutional kernel; with circular padding and global average pooling
    it is invariant to cyclic shifts of the rows (exact up to rounding); an SVC uses it like any kernel."""
    arch = nk.serial(nk.Conv(8, 3, padding="CIRCULAR", W_std=1.3, b_std=0.2), nk.Relu(), nk.GlobalAvgPool(),
                     nk.Dense(1, 1.3, 0.2))
    rng = np.random.default_rng(2)
    X = rng.normal(size=(9, 12))
    k = NeuralKernel(arch, "ntk", input_shape=(1, 12))
    K = k(X)
    np.testing.assert_allclose(K, arch.kernel(torch.from_numpy(X).reshape(9, 1, 12)).ntk.numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(k(X, np.roll(X, 5, axis=1)), k(X, X), rtol=0, atol=100 * EPS * np.abs(K).max())
    flat = NeuralKernel(nk.serial(nk.Conv(8, 3, padding="CIRCULAR"), nk.Relu(), nk.Flatten(), nk.Dense(1)),
                        input_shape=(1, 12))
    assert np.abs(flat(X, np.roll(X, 5, axis=1)) - flat(X, X)).max() > 1e-3 * np.abs(flat(X)).max()  # not invariant
    labels = (X[:, :6].sum(1) > 0).astype(int)
    svc = SVC(kernel=k, C=10.0).fit(X, labels)
    np.testing.assert_allclose(svc.decision_function(np.roll(X, 3, axis=1)), svc.decision_function(X), rtol=1e-8,
                               atol=1e-8)


# --------------------------------------------------------------------------------------------------
# scikit-learn's estimator checks
# --------------------------------------------------------------------------------------------------
def _failed_checks(estimator):
    return {r["check_name"] for r in check_estimator(estimator, on_fail=None) if r["status"] == "failed"}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_scikit_learn_estimator_checks_pass_with_the_kernel():
    """KernelRidge and GaussianProcessRegressor pass every check; SVC fails only the checks that SVC with any
    callable kernel fails (it does not set n_features_in_ for callables, and its sample weights are not
    equivalent to repeated points). (The marginal-likelihood fit with free hyperparameters passes them too,
    in about five minutes: its gradient costs four kernels per hyperparameter; the fit is checked above.)"""
    arch = nk.serial(nk.Dense(16, 1.3, 0.2), nk.Relu(), nk.Dense(1, 1.3, 0.2))
    assert _failed_checks(KernelRidge(kernel=NeuralKernel(arch), alpha=0.1)) == set()
    assert _failed_checks(GaussianProcessRegressor(NeuralKernel(arch, "nngp"), alpha=0.1, optimizer=None)) == set()
    mine = _failed_checks(SVC(kernel=NeuralKernel(arch)))
    plain = _failed_checks(SVC(kernel=lambda a, b: np.asarray(a) @ np.asarray(b).T))
    assert mine <= plain, mine - plain
