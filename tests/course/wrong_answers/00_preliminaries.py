"""Plausible wrong answers for notebook 00 (format: tests/course/test_wrong_answers.py)."""

WRONG_ANSWERS = [
    dict(cell="krr_predict", why="the ridge divided by n (a mean-loss formula used with a sum-of-squares ridge)",
         source='''
def krr_predict(k_train_train, k_test_train, y_train, ridge):
    n = k_train_train.shape[0]
    chol = torch.linalg.cholesky(k_train_train + ridge / n * torch.eye(n))
    return k_test_train @ torch.cholesky_solve(y_train[:, None], chol)[:, 0]
'''),
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
    dict(cell="per_example_jacobian", why="weight matrices flattened column-major (as W.T), not row-major like .reshape(-1)",
         source='''
def per_example_jacobian(model, x):
    params = {name: p.detach() for name, p in model.named_parameters()}

    def f_single(params, x_i):
        return functional_call(model, params, (x_i[None, :],)).reshape(())

    jac = vmap(jacrev(f_single), in_dims=(None, 0))(params, x)
    return torch.cat([(j.transpose(-1, -2) if j.ndim == 3 else j).reshape(x.shape[0], -1) for j in jac.values()], 1)
'''),
    dict(cell="answer_far_from_data", why="believes the prediction far from the data tends to the mean of the targets",
         source='ANSWER_FAR_FROM_DATA = "B"', visible=False),
]
