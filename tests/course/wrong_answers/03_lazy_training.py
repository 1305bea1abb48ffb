"""Plausible wrong answers for notebook 03 (format: tests/course/test_wrong_answers.py)."""

WRONG_ANSWERS = [
    # Exercise 1: gradient flow at test inputs
    dict(cell="flow_test", why="divides by the eigenvalues without the lambda -> 0 limit",
         source='''
def flow_test(k_test_train, k_train_train, y_train, fx_train_0, fx_test_0, t):
    evals, evecs = torch.linalg.eigh(k_train_train)
    evals = evals.clamp_min(0.0)
    gain = (1 - torch.exp(-t[:, None] * evals[None, :])) / evals
    coef = gain * (evecs.T @ (y_train - fx_train_0))
    return fx_test_0 + coef @ (k_test_train @ evecs).T
'''),
    dict(cell="flow_test", why="solves with Theta^-1 (Theta^-1 (I - expm(-Theta t)) (y - f0))",
         source='''
def flow_test(k_test_train, k_train_train, y_train, fx_train_0, fx_test_0, t):
    eye = torch.eye(k_train_train.shape[0])
    rows = [fx_test_0 + k_test_train @ torch.linalg.solve(
        k_train_train, (eye - torch.linalg.matrix_exp(-float(s) * k_train_train)) @ (y_train - fx_train_0)) for s in t]
    return torch.stack(rows)
'''),
    dict(cell="flow_test", why="transposed eigenvectors (rows of eigh's matrix taken as eigenvectors)",
         source='''
def flow_test(k_test_train, k_train_train, y_train, fx_train_0, fx_test_0, t):
    evals, evecs = torch.linalg.eigh(k_train_train)
    vecs = evecs.T
    evals = evals.clamp_min(0.0)
    positive = evals > 1e-12 * evals.max()
    safe = torch.where(positive, evals, torch.ones_like(evals))
    lam_t = t[:, None] * evals[None, :]
    gain = torch.where(positive, -torch.expm1(-lam_t) / safe, t[:, None].expand_as(lam_t))
    coef = gain * (vecs.T @ (y_train - fx_train_0))
    return fx_test_0 + coef @ (k_test_train @ vecs).T
'''),
    dict(cell="flow_test", why="the mean-loss time: exp(-lambda t / N)",
         source='''
def flow_test(k_test_train, k_train_train, y_train, fx_train_0, fx_test_0, t):
    n = k_train_train.shape[0]
    evals, evecs = torch.linalg.eigh(k_train_train)
    evals = evals.clamp_min(0.0)
    positive = evals > 1e-12 * evals.max()
    safe = torch.where(positive, evals, torch.ones_like(evals))
    lam_t = t[:, None] * evals[None, :] / n
    gain = torch.where(positive, -torch.expm1(-lam_t) / safe, t[:, None].expand_as(lam_t) / n)
    coef = gain * (evecs.T @ (y_train - fx_train_0))
    return fx_test_0 + coef @ (k_test_train @ evecs).T
'''),
    dict(cell="answer_limit", why="the formula without f0 (the average over initializations)", visible=False,
         source='ANSWER_LIMIT = "A"'),
    dict(cell="answer_limit", why="adds f0(x*) but fits y instead of the residual", visible=False,
         source='ANSWER_LIMIT = "C"'),
    # Exercise 2: the trained ensemble
    dict(cell="trained_ensemble", why="the NNGP posterior (Bayesian inference with the prior) instead of the trained ensemble",
         source='''
def trained_ensemble(ntk_train_train, ntk_test_train, nngp_train_train, nngp_test_train, nngp_test_test, y_train, t):
    sol = torch.linalg.solve(nngp_train_train, torch.cat([y_train[:, None], nngp_test_train.T], 1))
    return nngp_test_train @ sol[:, 0], nngp_test_test - nngp_test_train @ sol[:, 1:]
'''),
    dict(cell="trained_ensemble", why="the covariance without the A K(X, X) A^T term (f_0(X) forgotten as a random vector)",
         source='''
def trained_ensemble(ntk_train_train, ntk_test_train, nngp_train_train, nngp_test_train, nngp_test_test, y_train, t):
    evals, evecs = torch.linalg.eigh(ntk_train_train)
    evals = evals.clamp_min(0.0)
    positive = evals > 0
    safe = torch.where(positive, evals, torch.ones_like(evals))
    gain = torch.where(positive, -torch.expm1(-evals * t) / safe, torch.full_like(evals, float(t)))
    a_t = (ntk_test_train @ evecs) * gain @ evecs.T
    cross = a_t @ nngp_test_train.T
    return a_t @ y_train, nngp_test_test - cross - cross.T
'''),
    dict(cell="trained_ensemble", why="the NTK in place of the NNGP in the cross-covariance of f_0(X*) and f_0(X)",
         source='''
def trained_ensemble(ntk_train_train, ntk_test_train, nngp_train_train, nngp_test_train, nngp_test_test, y_train, t):
    evals, evecs = torch.linalg.eigh(ntk_train_train)
    evals = evals.clamp_min(0.0)
    positive = evals > 0
    safe = torch.where(positive, evals, torch.ones_like(evals))
    gain = torch.where(positive, -torch.expm1(-evals * t) / safe, torch.full_like(evals, float(t)))
    a_t = (ntk_test_train @ evecs) * gain @ evecs.T
    cross = a_t @ ntk_test_train.T
    return a_t @ y_train, nngp_test_test - cross - cross.T + a_t @ nngp_train_train @ a_t.T
'''),
    dict(cell="trained_ensemble", why="the t -> infinity formulas at every time",
         source='''
def trained_ensemble(ntk_train_train, ntk_test_train, nngp_train_train, nngp_test_train, nngp_test_test, y_train, t):
    a = torch.linalg.solve(ntk_train_train, ntk_test_train.T).T
    cross = a @ nngp_test_train.T
    return a @ y_train, nngp_test_test - cross - cross.T + a @ nngp_train_train @ a.T
'''),
    # Exercise 3: gradient descent at test inputs
    dict(cell="gd_test", why="the flow's formula with t = eta * steps",
         source='''
def gd_test(k_test_train, k_train_train, y_train, fx_train_0, fx_test_0, eta, steps):
    evals, evecs = torch.linalg.eigh(k_train_train)
    evals = evals.clamp_min(0.0)
    t = eta * steps.to(evals.dtype)[:, None]
    positive = evals > 0
    safe = torch.where(positive, evals, torch.ones_like(evals))
    gain = torch.where(positive, -torch.expm1(-t * evals) / safe, t)
    coef = gain * (evecs.T @ (y_train - fx_train_0))
    return fx_test_0 + coef @ (k_test_train @ evecs).T
'''),
    dict(cell="gd_test", why="(1 - eta lambda)^k as exp(k log(1 - eta lambda)): NaN when eta lambda > 1",
         source='''
def gd_test(k_test_train, k_train_train, y_train, fx_train_0, fx_test_0, eta, steps):
    evals, evecs = torch.linalg.eigh(k_train_train)
    evals = evals.clamp_min(0.0)
    k = steps.to(evals.dtype)[:, None]
    positive = evals > 0
    safe = torch.where(positive, evals, torch.ones_like(evals))
    power = torch.exp(k * torch.log(1 - eta * evals))
    gain = torch.where(positive, (1 - power) / safe, eta * k)
    coef = gain * (evecs.T @ (y_train - fx_train_0))
    return fx_test_0 + coef @ (k_test_train @ evecs).T
'''),
    dict(cell="gd_test", why="divides by the eigenvalues without the lambda -> 0 limit (eta k)",
         source='''
def gd_test(k_test_train, k_train_train, y_train, fx_train_0, fx_test_0, eta, steps):
    evals, evecs = torch.linalg.eigh(k_train_train)
    evals = evals.clamp_min(0.0)
    k = steps.to(evals.dtype)[:, None]
    gain = (1 - (1 - eta * evals) ** k) / evals
    coef = gain * (evecs.T @ (y_train - fx_train_0))
    return fx_test_0 + coef @ (k_test_train @ evecs).T
'''),
    dict(cell="gd_test", why="one step too many: the geometric sum up to j = k instead of j = k - 1",
         source='''
def gd_test(k_test_train, k_train_train, y_train, fx_train_0, fx_test_0, eta, steps):
    evals, evecs = torch.linalg.eigh(k_train_train)
    evals = evals.clamp_min(0.0)
    k = steps.to(evals.dtype)[:, None] + 1
    positive = evals > 0
    safe = torch.where(positive, evals, torch.ones_like(evals))
    gain = torch.where(positive, (1 - (1 - eta * evals) ** k) / safe, eta * k)
    coef = gain * (evecs.T @ (y_train - fx_train_0))
    return fx_test_0 + coef @ (k_test_train @ evecs).T
'''),
    dict(cell="answer_lazy", why="the seed's claim: the weights move O(n^-1/2)", visible=False,
         source='ANSWER_LAZY = "A"'),
    dict(cell="answer_lazy", why="small move relative to |theta_0| as the cause (the claim Liu, Zhu & Belkin reject)",
         visible=False, source='ANSWER_LAZY = "D"'),
    # Exercise 4: weight decay towards zero
    dict(cell="ridge_limit_to_zero", why="ridge regression around f0 (the formula for decay towards the initialization)",
         source='''
def ridge_limit_to_zero(k_test_train, k_train_train, y_train, fx_train_0, fx_test_0, jtheta_train_0, jtheta_test_0,
                        weight_decay):
    n = k_train_train.shape[0]
    coef = torch.linalg.solve(k_train_train + weight_decay * torch.eye(n), y_train - fx_train_0)
    return fx_test_0 + k_test_train @ coef
'''),
    dict(cell="ridge_limit_to_zero", why="the lesson's Theta (Theta + lambda I)^-1 y (assumes J theta = f, i.e. g0 = 0)",
         source='''
def ridge_limit_to_zero(k_test_train, k_train_train, y_train, fx_train_0, fx_test_0, jtheta_train_0, jtheta_test_0,
                        weight_decay):
    n = k_train_train.shape[0]
    return k_test_train @ torch.linalg.solve(k_train_train + weight_decay * torch.eye(n), y_train)
'''),
    dict(cell="ridge_limit_to_zero", why="the mean-loss ridge N lambda with the loss 1/2 sum",
         source='''
def ridge_limit_to_zero(k_test_train, k_train_train, y_train, fx_train_0, fx_test_0, jtheta_train_0, jtheta_test_0,
                        weight_decay):
    n = k_train_train.shape[0]
    g_train, g_test = fx_train_0 - jtheta_train_0, fx_test_0 - jtheta_test_0
    return g_test + k_test_train @ torch.linalg.solve(k_train_train + n * weight_decay * torch.eye(n), y_train - g_train)
'''),
    dict(cell="ridge_limit_to_zero", why="the linear model at theta = 0 taken as f0 + J0 theta0 (sign)",
         source='''
def ridge_limit_to_zero(k_test_train, k_train_train, y_train, fx_train_0, fx_test_0, jtheta_train_0, jtheta_test_0,
                        weight_decay):
    n = k_train_train.shape[0]
    g_train, g_test = fx_train_0 + jtheta_train_0, fx_test_0 + jtheta_test_0
    return g_test + k_test_train @ torch.linalg.solve(k_train_train + weight_decay * torch.eye(n), y_train - g_train)
'''),
    # Exercise 5: time constants (numbers: checked by the hidden test, like a multiple-choice answer)
    dict(cell="answer_time_constants", why="the two eigenvalues swapped", visible=False, source='''
RHO = 0.8
TAU_OPPOSITE = 1.0 / (1.0 + RHO)
TAU_SAME = 1.0 / (1.0 - RHO)
'''),
    dict(cell="answer_time_constants", why="the lesson's 'the smallest eigenvalue sets the rate' for both targets",
         visible=False, source='''
RHO = 0.8
TAU_OPPOSITE = 1.0 / (1.0 - RHO)
TAU_SAME = 1.0 / (1.0 - RHO)
'''),
    dict(cell="answer_time_constants", why="the mean loss's factor 1/N (N = 2) in the rates", visible=False, source='''
RHO = 0.8
TAU_OPPOSITE = 2.0 / (1.0 - RHO)
TAU_SAME = 2.0 / (1.0 + RHO)
'''),
    dict(cell="answer_modes", why="the lesson: the smallest eigenvalue sets the time whatever the targets", visible=False,
         source='ANSWER_MODES = "B"'),
    dict(cell="answer_modes", why="the condition number in the time of gradient flow (steps and time mixed up)",
         visible=False, source='ANSWER_MODES = "D"'),
]
