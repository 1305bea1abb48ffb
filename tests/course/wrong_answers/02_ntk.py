"""Plausible wrong answers for notebook 02 (format: tests/course/test_wrong_answers.py)."""

WRONG_ANSWERS = [
    # Exercise 1: the empirical NTK split by parameter tensor
    dict(cell="empirical_ntk_by_group", why="the Jacobian at x1 used on both sides (J_g(x1) J_g(x1)^T)",
         source='''
def empirical_ntk_by_group(model, x1, x2):
    params = {name: p.detach() for name, p in model.named_parameters()}

    def f_single(p, x):
        return functional_call(model, p, (x[None],)).reshape(())

    j1 = vmap(jacrev(f_single), in_dims=(None, 0))(params, x1)
    return {name: j1[name].reshape(x1.shape[0], -1) @ j1[name].reshape(x1.shape[0], -1).T for name in params}
'''),
    dict(cell="empirical_ntk_by_group", why="one Jacobian of a weight matrix flattened as W.T (column-major), the other row-major",
         source='''
def empirical_ntk_by_group(model, x1, x2):
    params = {name: p.detach() for name, p in model.named_parameters()}

    def f_single(p, x):
        return functional_call(model, p, (x[None],)).reshape(())

    jac = vmap(jacrev(f_single), in_dims=(None, 0))
    j1, j2 = jac(params, x1), jac(params, x2)
    out = {}
    for name in params:
        a = j1[name].transpose(-1, -2) if j1[name].ndim == 3 else j1[name]
        out[name] = a.reshape(x1.shape[0], -1) @ j2[name].reshape(x2.shape[0], -1).T
    return out
'''),
    dict(cell="answer_first_layer", why="credits the readout's random features to the first layer", visible=False,
         source='ANSWER_FIRST_LAYER = "A"'),
    dict(cell="answer_first_layer", why="the whole first-layer share, biases included", visible=False,
         source='ANSWER_FIRST_LAYER = "D"'),
    # Exercise 2: the four terms for a leaky ReLU
    dict(cell="leaky_relu_ntk_terms", why="first-layer and readout terms swapped (the sum is right)",
         source='''
def leaky_relu_ntk_terms(x1, x2, W_std, b_std, alpha):
    d = x1.shape[1]
    lin = x1 @ x2.T / d
    cov = W_std**2 * lin + b_std**2
    var1 = W_std**2 * (x1 * x1).sum(1) / d + b_std**2
    var2 = W_std**2 * (x2 * x2).sum(1) / d + b_std**2
    K_same, K_dot_same = relu_maps(cov, var1[:, None], var2[None, :])
    K_flip, K_dot_flip = relu_maps(-cov, var1[:, None], var2[None, :])
    K = (1 + alpha**2) * K_same - 2 * alpha * K_flip
    K_dot = (1 + alpha**2) * K_dot_same + 2 * alpha * K_dot_flip
    return {"W2": W_std**2 * K_dot * W_std**2 * lin, "b1": W_std**2 * K_dot * b_std**2,
            "W1": W_std**2 * K, "b2": torch.full_like(K, b_std**2)}
'''),
    dict(cell="leaky_relu_ntk_terms", why="no cross terms: the relu(u) and relu(-u) parts treated as independent",
         source='''
def leaky_relu_ntk_terms(x1, x2, W_std, b_std, alpha):
    d = x1.shape[1]
    lin = x1 @ x2.T / d
    cov = W_std**2 * lin + b_std**2
    var1 = W_std**2 * (x1 * x1).sum(1) / d + b_std**2
    var2 = W_std**2 * (x2 * x2).sum(1) / d + b_std**2
    K_same, K_dot_same = relu_maps(cov, var1[:, None], var2[None, :])
    K, K_dot = (1 + alpha**2) * K_same, (1 + alpha**2) * K_dot_same
    return {"W1": W_std**2 * K_dot * W_std**2 * lin, "b1": W_std**2 * K_dot * b_std**2,
            "W2": W_std**2 * K, "b2": torch.full_like(K, b_std**2)}
'''),
    dict(cell="leaky_relu_ntk_terms", why="the derivative kernel's cross term with a minus sign (copied from K)",
         source='''
def leaky_relu_ntk_terms(x1, x2, W_std, b_std, alpha):
    d = x1.shape[1]
    lin = x1 @ x2.T / d
    cov = W_std**2 * lin + b_std**2
    var1 = W_std**2 * (x1 * x1).sum(1) / d + b_std**2
    var2 = W_std**2 * (x2 * x2).sum(1) / d + b_std**2
    K_same, K_dot_same = relu_maps(cov, var1[:, None], var2[None, :])
    K_flip, K_dot_flip = relu_maps(-cov, var1[:, None], var2[None, :])
    K = (1 + alpha**2) * K_same - 2 * alpha * K_flip
    K_dot = (1 + alpha**2) * K_dot_same - 2 * alpha * K_dot_flip
    return {"W1": W_std**2 * K_dot * W_std**2 * lin, "b1": W_std**2 * K_dot * b_std**2,
            "W2": W_std**2 * K, "b2": torch.full_like(K, b_std**2)}
'''),
    dict(cell="leaky_relu_ntk_terms", why="phi = (1 - alpha) relu: the negative part taken at the same covariance",
         source='''
def leaky_relu_ntk_terms(x1, x2, W_std, b_std, alpha):
    d = x1.shape[1]
    lin = x1 @ x2.T / d
    cov = W_std**2 * lin + b_std**2
    var1 = W_std**2 * (x1 * x1).sum(1) / d + b_std**2
    var2 = W_std**2 * (x2 * x2).sum(1) / d + b_std**2
    K_same, K_dot_same = relu_maps(cov, var1[:, None], var2[None, :])
    K, K_dot = (1 - alpha)**2 * K_same, (1 - alpha)**2 * K_dot_same
    return {"W1": W_std**2 * K_dot * W_std**2 * lin, "b1": W_std**2 * K_dot * b_std**2,
            "W2": W_std**2 * K, "b2": torch.full_like(K, b_std**2)}
'''),
    # Exercise 3: the deep ReLU NTK
    dict(cell="relu_ntk", why="no variance update (invisible at W_std^2 = 2, b_std = 0, where the variance is a fixed point)",
         source='''
def relu_ntk(x1, x2, depth, W_std, b_std):
    d = x1.shape[1]
    cov = W_std**2 * (x1 @ x2.T) / d + b_std**2
    var1 = W_std**2 * (x1 * x1).sum(1) / d + b_std**2
    var2 = W_std**2 * (x2 * x2).sum(1) / d + b_std**2
    ntk = cov.clone()
    for _ in range(depth):
        K, K_dot = relu_maps(cov, var1[:, None], var2[None, :])
        cov = W_std**2 * K + b_std**2
        ntk = cov + W_std**2 * K_dot * ntk
    return cov, ntk
'''),
    dict(cell="relu_ntk", why="the encyclopedia's recursion: no sigma_w^2 in front of K_dot * ntk",
         source='''
def relu_ntk(x1, x2, depth, W_std, b_std):
    d = x1.shape[1]
    cov = W_std**2 * (x1 @ x2.T) / d + b_std**2
    var1 = W_std**2 * (x1 * x1).sum(1) / d + b_std**2
    var2 = W_std**2 * (x2 * x2).sum(1) / d + b_std**2
    ntk = cov.clone()
    for _ in range(depth):
        K, K_dot = relu_maps(cov, var1[:, None], var2[None, :])
        cov = W_std**2 * K + b_std**2
        ntk = cov + K_dot * ntk
        var1 = W_std**2 * var1 / 2 + b_std**2
        var2 = W_std**2 * var2 / 2 + b_std**2
    return cov, ntk
'''),
    dict(cell="relu_ntk", why="the bias only in the first layer",
         source='''
def relu_ntk(x1, x2, depth, W_std, b_std):
    d = x1.shape[1]
    cov = W_std**2 * (x1 @ x2.T) / d + b_std**2
    var1 = W_std**2 * (x1 * x1).sum(1) / d + b_std**2
    var2 = W_std**2 * (x2 * x2).sum(1) / d + b_std**2
    ntk = cov.clone()
    for _ in range(depth):
        K, K_dot = relu_maps(cov, var1[:, None], var2[None, :])
        cov = W_std**2 * K
        ntk = cov + W_std**2 * K_dot * ntk
        var1 = W_std**2 * var1 / 2
        var2 = W_std**2 * var2 / 2
    return cov, ntk
'''),
    # Exercise 4: frozen layers
    dict(cell="frozen_relu_ntk", why="off by one: freezes n_frozen + 1 layers (layer > n_frozen + 1 trained)",
         source='''
def frozen_relu_ntk(x1, x2, depth, W_std, b_std, n_frozen):
    d = x1.shape[1]
    cov = W_std**2 * (x1 @ x2.T) / d + b_std**2
    var1 = W_std**2 * (x1 * x1).sum(1) / d + b_std**2
    var2 = W_std**2 * (x2 * x2).sum(1) / d + b_std**2
    ntk = torch.zeros_like(cov)
    for layer in range(2, depth + 2):
        K, K_dot = relu_maps(cov, var1[:, None], var2[None, :])
        cov = W_std**2 * K + b_std**2
        ntk = (cov if layer > n_frozen + 1 else 0.0) + W_std**2 * K_dot * ntk
        var1 = W_std**2 * var1 / 2 + b_std**2
        var2 = W_std**2 * var2 / 2 + b_std**2
    return ntk
'''),
    dict(cell="frozen_relu_ntk", why="subtracts the frozen layers' NNGP kernels without the gains of the layers above",
         source='''
def frozen_relu_ntk(x1, x2, depth, W_std, b_std, n_frozen):
    d = x1.shape[1]
    cov = W_std**2 * (x1 @ x2.T) / d + b_std**2
    var1 = W_std**2 * (x1 * x1).sum(1) / d + b_std**2
    var2 = W_std**2 * (x2 * x2).sum(1) / d + b_std**2
    ntk, frozen = cov.clone(), (cov.clone() if n_frozen >= 1 else torch.zeros_like(cov))
    for layer in range(2, depth + 2):
        K, K_dot = relu_maps(cov, var1[:, None], var2[None, :])
        cov = W_std**2 * K + b_std**2
        ntk = cov + W_std**2 * K_dot * ntk
        if layer <= n_frozen:
            frozen = frozen + cov
        var1 = W_std**2 * var1 / 2 + b_std**2
        var2 = W_std**2 * var2 / 2 + b_std**2
    return ntk - frozen
'''),
    dict(cell="frozen_relu_ntk", why="freezes the top layers below the readout instead of the lowest ones",
         source='''
def frozen_relu_ntk(x1, x2, depth, W_std, b_std, n_frozen):
    d = x1.shape[1]
    cov = W_std**2 * (x1 @ x2.T) / d + b_std**2
    var1 = W_std**2 * (x1 * x1).sum(1) / d + b_std**2
    var2 = W_std**2 * (x2 * x2).sum(1) / d + b_std**2
    ntk = cov.clone() if depth - n_frozen >= 1 else torch.zeros_like(cov)
    for layer in range(2, depth + 2):
        K, K_dot = relu_maps(cov, var1[:, None], var2[None, :])
        cov = W_std**2 * K + b_std**2
        trained = layer == depth + 1 or layer <= depth - n_frozen
        ntk = (cov if trained else 0.0) + W_std**2 * K_dot * ntk
        var1 = W_std**2 * var1 / 2 + b_std**2
        var2 = W_std**2 * var2 / 2 + b_std**2
    return ntk
'''),
    dict(cell="answer_standard_parameterization", why="same function, so same NTK (the parameterization is cosmetic)",
         visible=False, source='ANSWER_STANDARD_PARAMETERIZATION = "A"'),
    dict(cell="answer_standard_parameterization", why="smaller weights, so a smaller NTK", visible=False,
         source='ANSWER_STANDARD_PARAMETERIZATION = "B"'),
    # Exercise 5: the deep linear NTK
    dict(cell="deep_linear_ntk", why="the bias only in the first layer",
         source='''
def deep_linear_ntk(x1, x2, depth, W_std, b_std):
    cov = W_std**2 * (x1 @ x2.T) / x1.shape[1] + b_std**2
    ntk = cov.clone()
    for _ in range(depth - 1):
        cov = W_std**2 * cov
        ntk = cov + W_std**2 * ntk
    return ntk
'''),
    dict(cell="deep_linear_ntk", why="the lesson's L (x.x')^L, with the 1/d and the weight variances put in",
         source='''
def deep_linear_ntk(x1, x2, depth, W_std, b_std):
    dot = (x1 @ x2.T) / x1.shape[1]
    return depth * W_std ** (2 * depth) * dot**depth + depth * b_std**2
'''),
    dict(cell="deep_linear_ntk", why="no W_std^2 on the tangent kernel of the layers below (the encyclopedia's recursion)",
         source='''
def deep_linear_ntk(x1, x2, depth, W_std, b_std):
    cov = W_std**2 * (x1 @ x2.T) / x1.shape[1] + b_std**2
    ntk = cov.clone()
    for _ in range(depth - 1):
        cov = W_std**2 * cov + b_std**2
        ntk = cov + ntk
    return ntk
'''),
]
