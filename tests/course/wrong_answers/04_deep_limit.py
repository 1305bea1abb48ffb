"""Plausible wrong answers for notebook 04 (format: tests/course/test_wrong_answers.py)."""

WRONG_ANSWERS = [
    # Exercise 1: the power-law tail of eps_{l+1} = eps_l - c eps_l^p
    dict(cell="power_law_tail", why="drops the factor p - 1 when integrating d(eps)/dl = -c eps^p",
         source='''
def power_law_tail(c, p):
    alpha = 1.0 / (p - 1.0)
    return float(c ** (-alpha)), float(alpha)
'''),
    dict(cell="power_law_tail", why="integrates eps^(-p) as eps^(-p+1)/p instead of eps^(1-p)/(p-1): alpha = 1/p",
         source='''
def power_law_tail(c, p):
    alpha = 1.0 / p
    return float((p * c) ** (-alpha)), float(alpha)
'''),
    dict(cell="power_law_tail", why="inverts the exponent: eps ~ l^-(p-1) instead of l^(-1/(p-1))",
         source='''
def power_law_tail(c, p):
    alpha = p - 1.0
    return float(((p - 1.0) * c) ** (-alpha)), float(alpha)
'''),
    # Exercise 2: chi_1 and the phase
    dict(cell="chi_1_and_phase", why="evaluates chi_1 at unit variance q = 1 instead of at the fixed point q*",
         source='''
def chi_1_and_phase(phi_name, W_std, b_std):
    phi = ACTIVATION_FUNCTIONS[phi_name]
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    z, w = torch.tensor(nodes), torch.tensor(weights / weights.sum())

    def phi_prime(u):
        u = u.detach().requires_grad_(True)
        return torch.autograd.grad(phi(u).sum(), u)[0]

    chi = W_std**2 * float((w * phi_prime(z) ** 2).sum())
    return chi, ("ordered" if chi < 1 else "chaotic")
'''),
    dict(cell="chi_1_and_phase", why="squares the mean of phi' instead of taking the mean of phi'^2",
         source='''
def chi_1_and_phase(phi_name, W_std, b_std):
    phi = ACTIVATION_FUNCTIONS[phi_name]
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    z, w = torch.tensor(nodes), torch.tensor(weights / weights.sum())

    def phi_prime(u):
        u = u.detach().requires_grad_(True)
        return torch.autograd.grad(phi(u).sum(), u)[0]

    q = 1.0
    for _ in range(10_000):
        q_next = W_std**2 * float((w * phi(math.sqrt(q) * z) ** 2).sum()) + b_std**2
        if abs(q_next - q) < 1e-14 * (1 + q):
            q = q_next
            break
        q = q_next
    chi = W_std**2 * float((w * phi_prime(math.sqrt(q) * z)).sum()) ** 2
    return chi, ("ordered" if chi < 1 else "chaotic")
'''),
    dict(cell="chi_1_and_phase", why="swaps the phases: calls chi_1 > 1 ordered (stretching read as stability)",
         source='''
def chi_1_and_phase(phi_name, W_std, b_std):
    phi = ACTIVATION_FUNCTIONS[phi_name]
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    z, w = torch.tensor(nodes), torch.tensor(weights / weights.sum())

    def phi_prime(u):
        u = u.detach().requires_grad_(True)
        return torch.autograd.grad(phi(u).sum(), u)[0]

    q = 1.0
    for _ in range(10_000):
        q_next = W_std**2 * float((w * phi(math.sqrt(q) * z) ** 2).sum()) + b_std**2
        if abs(q_next - q) < 1e-14 * (1 + q):
            q = q_next
            break
        q = q_next
    chi = W_std**2 * float((w * phi_prime(math.sqrt(q) * z) ** 2).sum())
    return chi, ("chaotic" if chi < 1 else "ordered")
'''),
    # Exercise 3: the normalized NTK of bias-free ReLU
    dict(cell="normalized_ntk_offdiag",
         why="takes the normalized NTK to be the normalized NNGP rho^(l), so its limit is the all-ones matrix",
         source='''
def normalized_ntk_offdiag(rho1, depth):
    rho = torch.tensor(float(rho1), dtype=torch.float64)
    out = [rho.clone()]
    for _ in range(1, depth):
        rho = dl.relu_correlation_map(rho)
        out.append(rho.clone())
    return torch.stack(out)


NTK_OFFDIAG_LIMIT = 1.0
'''),
    dict(cell="normalized_ntk_offdiag", why="forgets the derivative kernel: Theta-bar^(l+1) = (rho^(l+1) + l Theta-bar^(l)) / (l + 1)",
         source='''
def normalized_ntk_offdiag(rho1, depth):
    rho = torch.tensor(float(rho1), dtype=torch.float64)
    out = [rho.clone()]
    for l in range(1, depth):
        rho = dl.relu_correlation_map(rho)
        out.append((rho + l * out[-1]) / (l + 1))
    return torch.stack(out)


NTK_OFFDIAG_LIMIT = 1.0
'''),
    dict(cell="normalized_ntk_offdiag", why="uses the derivative kernel of the new layer, hdot(rho^(l+1)), instead of hdot(rho^(l))",
         source='''
def normalized_ntk_offdiag(rho1, depth):
    rho = torch.tensor(float(rho1), dtype=torch.float64)
    out = [rho.clone()]
    for l in range(1, depth):
        rho = dl.relu_correlation_map(rho)
        out.append((rho + l * dl.relu_correlation_map_derivative(rho) * out[-1]) / (l + 1))
    return torch.stack(out)


NTK_OFFDIAG_LIMIT = 0.25
'''),
    dict(cell="normalized_ntk_offdiag",
         why="the paper's normalization: the NTK (W_std = 1, unit inputs, n0 = 2) divided by n0 2^(L-1)/L",
         source='''
def normalized_ntk_offdiag(rho1, depth):
    n0 = 2
    rho = torch.tensor(float(rho1), dtype=torch.float64)
    theta = rho / n0  # Theta^(1)(x, x') = Sigma^(1)(x, x') = x.x'/n0 for unit inputs
    out = [theta / n0]
    for l in range(1, depth):
        rho_dot = dl.relu_correlation_map_derivative(rho)
        rho = dl.relu_correlation_map(rho)
        theta = rho / (n0 * 2**l) + 0.5 * rho_dot * theta  # Sigma^(l+1)(x, x') = rho^(l+1) / (n0 2^l)
        out.append(theta / (n0 * 2**l / (l + 1)))
    return torch.stack(out)


NTK_OFFDIAG_LIMIT = 1.0
'''),
    dict(cell="normalized_ntk_offdiag", why="a right recursion, but the paper's limit (the all-ones matrix) stated for it",
         source='''
def normalized_ntk_offdiag(rho1, depth):
    rho = torch.tensor(float(rho1), dtype=torch.float64)
    out = [rho.clone()]
    for l in range(1, depth):
        rho_next = dl.relu_correlation_map(rho)
        out.append((rho_next + l * dl.relu_correlation_map_derivative(rho) * out[-1]) / (l + 1))
        rho = rho_next
    return torch.stack(out)


NTK_OFFDIAG_LIMIT = 1.0
'''),
    # Exercise 4: the predictor of the deep limit
    dict(cell="deep_limit_prediction", why="believes both normalized kernels tend to all-ones, so both predict the mean",
         source='''
def deep_limit_prediction(y_train, kernel):
    return float(y_train.mean())
'''),
    dict(cell="deep_limit_prediction",
         why="NTK: forgets the factor b = 1/4 of the test row k(x, X) = b 1^T, giving 4 sum(y) / (n + 3)",
         source='''
def deep_limit_prediction(y_train, kernel):
    n = y_train.shape[0]
    if kernel == "nngp":
        return float(y_train.sum() / n)
    return float(4 * y_train.sum() / (n + 3))
'''),
    dict(cell="deep_limit_prediction",
         why="NNGP: reads det -> 0 as the minimum-norm solution 0, so the deep NNGP predicts 0",
         source='''
def deep_limit_prediction(y_train, kernel):
    n = y_train.shape[0]
    if kernel == "nngp":
        return 0.0
    return float(y_train.sum() / (n + 3))
'''),
    # multiple choice (checked against the full tests)
    dict(cell="answer_layers", why="expects geometric convergence to the fixed point", source='ANSWER_LAYERS = "A"',
         visible=False),
    dict(cell="answer_layers", why="confuses 'never exactly 1' with 'bounded away from 1'", source='ANSWER_LAYERS = "C"',
         visible=False),
    dict(cell="answer_ordered_limit", why="expects the bias-free 1/4 to survive a bias in the ordered phase",
         source='ANSWER_ORDERED_LIMIT = "A"', visible=False),
    dict(cell="answer_float32", why="blames a divergent regression map for the NaNs", source='ANSWER_FLOAT32 = "C"',
         visible=False),
]
