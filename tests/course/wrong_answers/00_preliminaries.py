"""Plausible wrong answers for notebook 00 (format: tests/course/test_wrong_answers.py)."""

WRONG_ANSWERS = [
    # ---- Exercise 1: krr_predict
    dict(cell="krr_predict", why="the ridge divided by n (a mean-loss formula used with a sum-of-squares ridge)",
         source='''
def krr_predict(k_train_train, k_test_train, y_train, ridge):
    n = k_train_train.shape[0]
    chol = torch.linalg.cholesky(k_train_train + ridge / n * torch.eye(n))
    return k_test_train @ torch.cholesky_solve(y_train[:, None], chol)[:, 0]
'''),
    dict(cell="krr_predict", why="an explicit inverse of K + ridge I, which the exercise forbids",
         source='''
def krr_predict(k_train_train, k_test_train, y_train, ridge):
    n = k_train_train.shape[0]
    return k_test_train @ torch.linalg.inv(k_train_train + ridge * torch.eye(n)) @ y_train
'''),
    dict(cell="krr_predict", why="the lower Cholesky factor passed to cholesky_solve as if it were upper triangular",
         source='''
def krr_predict(k_train_train, k_test_train, y_train, ridge):
    n = k_train_train.shape[0]
    chol = torch.linalg.cholesky(k_train_train + ridge * torch.eye(n))
    return k_test_train @ torch.cholesky_solve(y_train[:, None], chol, upper=True)[:, 0]
'''),
    dict(cell="krr_predict", why="the ridge squared (lambda^2 I, from the penalty lambda^2 |w|^2)",
         source='''
def krr_predict(k_train_train, k_test_train, y_train, ridge):
    n = k_train_train.shape[0]
    chol = torch.linalg.cholesky(k_train_train + ridge**2 * torch.eye(n))
    return k_test_train @ torch.cholesky_solve(y_train[:, None], chol)[:, 0]
'''),
    # ---- question: KRR far from the data
    dict(cell="answer_far_from_data", why="believes the prediction far from the data tends to the mean of the targets",
         source='ANSWER_FAR_FROM_DATA = "B"', visible=False),
    dict(cell="answer_far_from_data", why="believes a universal approximator recovers the true function everywhere",
         source='ANSWER_FAR_FROM_DATA = "D"', visible=False),
    # ---- Exercise 2: gp_posterior
    dict(cell="gp_posterior", why="the noise added to the test covariance (the predictive covariance of noisy y_*)",
         source='''
def gp_posterior(k_train_train, k_test_train, k_test_test, y_train, noise_var):
    n = k_train_train.shape[0]
    chol = torch.linalg.cholesky(k_train_train + noise_var * torch.eye(n))
    alpha = torch.cholesky_solve(y_train[:, None], chol)[:, 0]
    v = torch.linalg.solve_triangular(chol, k_test_train.T, upper=False)
    cov = k_test_test + noise_var * torch.eye(k_test_test.shape[0]) - v.T @ v
    return k_test_train @ alpha, cov
'''),
    dict(cell="gp_posterior", why="an explicit inverse of K + noise I, which the exercise forbids",
         source='''
def gp_posterior(k_train_train, k_test_train, k_test_test, y_train, noise_var):
    n = k_train_train.shape[0]
    a_inv = torch.linalg.inv(k_train_train + noise_var * torch.eye(n))
    return k_test_train @ a_inv @ y_train, k_test_test - k_test_train @ a_inv @ k_test_train.T
'''),
    dict(cell="gp_posterior", why="V = L^{-T} K_*^T (the transposed factor) instead of L^{-1} K_*^T",
         source='''
def gp_posterior(k_train_train, k_test_train, k_test_test, y_train, noise_var):
    n = k_train_train.shape[0]
    chol = torch.linalg.cholesky(k_train_train + noise_var * torch.eye(n))
    alpha = torch.cholesky_solve(y_train[:, None], chol)[:, 0]
    v = torch.linalg.solve_triangular(chol.T, k_test_train.T, upper=True)
    return k_test_train @ alpha, k_test_test - v.T @ v
'''),
    dict(cell="gp_posterior", why="V V^T instead of V^T V for the subtracted term (the n x n product, not m x m)",
         source='''
def gp_posterior(k_train_train, k_test_train, k_test_test, y_train, noise_var):
    n = k_train_train.shape[0]
    chol = torch.linalg.cholesky(k_train_train + noise_var * torch.eye(n))
    alpha = torch.cholesky_solve(y_train[:, None], chol)[:, 0]
    v = torch.linalg.solve_triangular(chol, k_test_train.T, upper=False)
    return k_test_train @ alpha, k_test_test - v @ v.T
'''),
    # ---- Exercise 3: loo_residuals
    dict(cell="loo_residuals", why="the training residuals y - f(X) of the fit on all points (nothing left out)",
         source='''
def loo_residuals(k_train_train, y_train, ridge):
    n = k_train_train.shape[0]
    chol = torch.linalg.cholesky(k_train_train + ridge * torch.eye(n))
    return y_train - k_train_train @ torch.cholesky_solve(y_train[:, None], chol)[:, 0]
'''),
    dict(cell="loo_residuals", why="divides by the diagonal of K + ridge I instead of the diagonal of its inverse",
         source='''
def loo_residuals(k_train_train, y_train, ridge):
    n = k_train_train.shape[0]
    a = k_train_train + ridge * torch.eye(n)
    alpha = torch.cholesky_solve(y_train[:, None], torch.linalg.cholesky(a))[:, 0]
    return alpha / a.diagonal()
'''),
    dict(cell="loo_residuals", why="multiplies by the diagonal of the inverse instead of dividing",
         source='''
def loo_residuals(k_train_train, y_train, ridge):
    n = k_train_train.shape[0]
    chol = torch.linalg.cholesky(k_train_train + ridge * torch.eye(n))
    alpha = torch.cholesky_solve(y_train[:, None], chol)[:, 0]
    return alpha * torch.cholesky_inverse(chol).diagonal()
'''),
    dict(cell="loo_residuals", why="returns the leave-one-out predictions f_{-i}(x_i), not the residuals",
         source='''
def loo_residuals(k_train_train, y_train, ridge):
    n = k_train_train.shape[0]
    chol = torch.linalg.cholesky(k_train_train + ridge * torch.eye(n))
    alpha = torch.cholesky_solve(y_train[:, None], chol)[:, 0]
    return y_train - alpha / torch.cholesky_inverse(chol).diagonal()
'''),
    dict(cell="loo_residuals", why="removes only the i-th row of K, keeping point i's own label in the fit (k_i,-i applied to the full solve)",
         source='''
def loo_residuals(k_train_train, y_train, ridge):
    n = k_train_train.shape[0]
    chol = torch.linalg.cholesky(k_train_train + ridge * torch.eye(n))
    alpha = torch.cholesky_solve(y_train[:, None], chol)[:, 0]
    k_off = k_train_train - torch.diag(k_train_train.diagonal())
    return y_train - k_off @ alpha
'''),
    # ---- Exercise 4: gp_posterior_repeats
    dict(cell="gp_posterior_repeats", why="ignores the counts: every average treated as a single measurement with noise sigma^2",
         source='''
def gp_posterior_repeats(k_train_train, k_test_train, k_test_test, y_mean, counts, noise_var):
    p = k_train_train.shape[0]
    chol = torch.linalg.cholesky(k_train_train + noise_var * torch.eye(p))
    alpha = torch.cholesky_solve(y_mean[:, None], chol)[:, 0]
    v = torch.linalg.solve_triangular(chol, k_test_train.T, upper=False)
    return k_test_train @ alpha, k_test_test - v.T @ v
'''),
    dict(cell="gp_posterior_repeats", why="noise variance sigma^2 * r (more measurements taken as more noise)",
         source='''
def gp_posterior_repeats(k_train_train, k_test_train, k_test_test, y_mean, counts, noise_var):
    chol = torch.linalg.cholesky(k_train_train + torch.diag(noise_var * counts.double()))
    alpha = torch.cholesky_solve(y_mean[:, None], chol)[:, 0]
    v = torch.linalg.solve_triangular(chol, k_test_train.T, upper=False)
    return k_test_train @ alpha, k_test_test - v.T @ v
'''),
    dict(cell="gp_posterior_repeats", why="noise variance sigma^2 / r^2 (the variance of a sum divided by r^2, counted twice)",
         source='''
def gp_posterior_repeats(k_train_train, k_test_train, k_test_test, y_mean, counts, noise_var):
    chol = torch.linalg.cholesky(k_train_train + torch.diag(noise_var / counts.double() ** 2))
    alpha = torch.cholesky_solve(y_mean[:, None], chol)[:, 0]
    v = torch.linalg.solve_triangular(chol, k_test_train.T, upper=False)
    return k_test_train @ alpha, k_test_test - v.T @ v
'''),
    dict(cell="gp_posterior_repeats", why="one noise level for all inputs: sigma^2 divided by the average count",
         source='''
def gp_posterior_repeats(k_train_train, k_test_train, k_test_test, y_mean, counts, noise_var):
    p = k_train_train.shape[0]
    chol = torch.linalg.cholesky(k_train_train + noise_var / counts.double().mean() * torch.eye(p))
    alpha = torch.cholesky_solve(y_mean[:, None], chol)[:, 0]
    v = torch.linalg.solve_triangular(chol, k_test_train.T, upper=False)
    return k_test_train @ alpha, k_test_test - v.T @ v
'''),
    # ---- question: interpolation
    dict(cell="answer_interpolation", why="the seed's claim: interpolation because the target lies in the RKHS",
         source='ANSWER_INTERPOLATION = "A"', visible=False),
    dict(cell="answer_interpolation", why="believes an infinite-dimensional feature space interpolates at any ridge",
         source='ANSWER_INTERPOLATION = "C"', visible=False),
    # ---- Exercise 5: per_example_jacobian
    dict(cell="per_example_jacobian", why="weight matrices flattened column-major (as W.T), not row-major like .reshape(-1)",
         source='''
def per_example_jacobian(model, x):
    params = {name: p.detach() for name, p in model.named_parameters()}

    def f_single(params, x_i):
        return functional_call(model, params, (x_i[None, :],)).reshape(())

    jac = vmap(jacrev(f_single), in_dims=(None, 0))(params, x)
    return torch.cat([(j.transpose(-1, -2) if j.ndim == 3 else j).reshape(x.shape[0], -1) for j in jac.values()], 1)
'''),
    dict(cell="per_example_jacobian", why="parameters concatenated in alphabetical order of their names, not the model's order",
         source='''
def per_example_jacobian(model, x):
    params = {name: p.detach() for name, p in model.named_parameters()}

    def f_single(params, x_i):
        return functional_call(model, params, (x_i[None, :],)).reshape(())

    jac = vmap(jacrev(f_single), in_dims=(None, 0))(params, x)
    return torch.cat([jac[name].reshape(x.shape[0], -1) for name in sorted(jac)], dim=1)
'''),
    dict(cell="per_example_jacobian", why="the gradient of the summed outputs repeated for every example (no per-example Jacobian)",
         source='''
def per_example_jacobian(model, x):
    params = {name: p.detach() for name, p in model.named_parameters()}
    grads = jacrev(lambda p: functional_call(model, p, (x,)).sum())(params)
    row = torch.cat([grads[name].reshape(-1) for name in params])
    return row[None, :].expand(x.shape[0], -1)
'''),
]
