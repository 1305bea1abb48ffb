"""Plausible wrong answers for notebook 06 (format: tests/course/test_wrong_answers.py)."""

_STEPS_HEAD = '''
def steps_to_fit(k_train_train, y_train, learning_rate, tolerance, loss):
    evals, evecs = torch.linalg.eigh(k_train_train)
    evals = torch.where(evals > 1e-12 * evals.max(), evals, torch.zeros_like(evals))
    n_norm = y_train.numel() if loss == "mean" else 1
    a = learning_rate * evals / n_norm
    c2 = (evecs.T @ y_train) ** 2
    total = float((y_train ** 2).sum())
    c2 = torch.where(c2 > 1e-24 * total, c2, torch.zeros_like(c2))
    target = tolerance ** 2 * total
    if total <= target:
        return 0
    weighted = c2 > 0
    if bool((weighted & (a > 2)).any()):
        return math.inf
'''

_SEARCH = '''
    hi = 1
    while remaining(hi) > target:
        hi *= 2
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if remaining(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi
'''

WRONG_ANSWERS = [
    # ---- Exercise 1: steps_to_fit ------------------------------------------------------------------
    dict(cell="steps_to_fit", why="gradient flow's exp(-eta lambda k) used for the discrete steps (1 - eta lambda)^k",
         source=_STEPS_HEAD + '''
    def remaining(k):
        return float((c2 * torch.exp(-2 * k * a)).sum())
''' + _SEARCH),
    dict(cell="steps_to_fit", why="the mean loss treated like the sum loss (no factor 1/N in the step)",
         source=_STEPS_HEAD.replace('n_norm = y_train.numel() if loss == "mean" else 1', "n_norm = 1") + '''
    factor = (1 - a).abs()
    if float(c2[weighted & (factor >= 1)].sum()) > target:
        return math.inf
    log_factor = torch.log(factor.clamp_min(1e-300))

    def remaining(k):
        return float((c2 * torch.exp(2 * k * log_factor)).sum())
''' + _SEARCH),
    dict(cell="steps_to_fit", why="the condition-number estimate: the smallest eigenvalue sets the time whatever the target",
         source='''
def steps_to_fit(k_train_train, y_train, learning_rate, tolerance, loss):
    evals = torch.linalg.eigvalsh(k_train_train)  # ascending
    n_norm = y_train.numel() if loss == "mean" else 1
    a = learning_rate * evals / n_norm
    if float(a[-1]) > 2:
        return math.inf
    if tolerance >= 1:
        return 0
    slowest = abs(1 - float(a[0]))  # the smallest eigenvalue: about kappa log(1 / tolerance) steps
    return math.ceil(math.log(tolerance) / math.log(slowest))
'''),
    dict(cell="steps_to_fit", why="every weighted mode must shrink by the tolerance on its own (instead of the total norm)",
         source=_STEPS_HEAD + '''
    factor = (1 - a).abs()
    if bool((weighted & (factor >= 1)).any()):
        return math.inf
    steps = [math.ceil(math.log(tolerance) / math.log(float(f))) for f, w in zip(factor, weighted) if w and f > 0]
    return max(steps) if steps else 1
'''),
    # ---- Exercise 2: circle_eigenvalues ------------------------------------------------------------
    dict(cell="circle_eigenvalues", why="the Fourier cosine coefficient (2/pi) int kappa cos(l phi) taken as the eigenvalue",
         source='''
def circle_eigenvalues(kappa_values, max_frequency):
    q = kappa_values.shape[0]
    phi = (torch.arange(q, dtype=kappa_values.dtype) + 0.5) * math.pi / q
    ell = torch.arange(max_frequency + 1, dtype=kappa_values.dtype)
    return 2 * (kappa_values[None, :] * torch.cos(ell[:, None] * phi[None, :])).mean(1)
'''),
    dict(cell="circle_eigenvalues", why="the S^2 formula (1/2) int kappa(cos phi) P_l sin(phi) dphi used on the circle",
         source='''
def circle_eigenvalues(kappa_values, max_frequency):
    q = kappa_values.shape[0]
    phi = (torch.arange(q, dtype=kappa_values.dtype) + 0.5) * math.pi / q
    ell = torch.arange(max_frequency + 1, dtype=kappa_values.dtype)
    return 0.5 * math.pi * (kappa_values[None, :] * torch.cos(ell[:, None] * phi[None, :]) * torch.sin(phi)).mean(1)
'''),
    dict(cell="circle_eigenvalues", why="the average over the full circle's length 2 pi with samples of half of it (1/(2 pi))",
         source='''
def circle_eigenvalues(kappa_values, max_frequency):
    q = kappa_values.shape[0]
    phi = (torch.arange(q, dtype=kappa_values.dtype) + 0.5) * math.pi / q
    ell = torch.arange(max_frequency + 1, dtype=kappa_values.dtype)
    return 0.5 * (kappa_values[None, :] * torch.cos(ell[:, None] * phi[None, :])).mean(1)
'''),
    dict(cell="circle_eigenvalues", why="the coefficients a_l of kappa(cos phi) = a_0 + sum_l a_l cos(l phi) returned "
                                        "(a_l = 2 mu_l for l >= 1: cos(l(phi - phi')) splits over cos and sin)",
         source='''
def circle_eigenvalues(kappa_values, max_frequency):
    q = kappa_values.shape[0]
    phi = (torch.arange(q, dtype=kappa_values.dtype) + 0.5) * math.pi / q
    ell = torch.arange(max_frequency + 1, dtype=kappa_values.dtype)
    mu = (kappa_values[None, :] * torch.cos(ell[:, None] * phi[None, :])).mean(1)
    return torch.cat([mu[:1], 2 * mu[1:]])
'''),
    # ---- Exercise 3: solve_kappa -------------------------------------------------------------------
    dict(cell="solve_kappa", why="Bordelon-Canatar-Pehlevan's kappa (n times this one) returned",
         source='''
def solve_kappa(eigenvalues, multiplicities, n, ridge):
    lam, m = eigenvalues.double(), multiplicities.double()
    if ridge == 0 and float(m[lam > 0].sum()) <= n:
        return 0.0

    def excess(log_kappa):
        kappa = math.exp(log_kappa)
        return float((m * lam / (lam + kappa)).sum()) + ridge / kappa - n

    hi = math.log((float((m * lam).sum()) + ridge) / n)
    lo = hi - 1.0
    while excess(lo) < 0:
        lo -= 2 * (hi - lo)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if excess(mid) > 0:
            lo = mid
        else:
            hi = mid
    return n * math.exp(0.5 * (lo + hi))
'''),
    dict(cell="solve_kappa", why="the multiplicities ignored (one mode per eigenvalue)",
         source='''
def solve_kappa(eigenvalues, multiplicities, n, ridge):
    lam = eigenvalues.double()
    if ridge == 0 and float((lam > 0).sum()) <= n:
        return 0.0

    def excess(log_kappa):
        kappa = math.exp(log_kappa)
        return float((lam / (lam + kappa)).sum()) + ridge / kappa - n

    lo, hi = -80.0, 20.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if excess(mid) > 0:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))
'''),
    dict(cell="solve_kappa", why="the ridge left out of the equation",
         source='''
def solve_kappa(eigenvalues, multiplicities, n, ridge):
    lam, m = eigenvalues.double(), multiplicities.double()
    if float(m[lam > 0].sum()) <= n:
        return 0.0

    def excess(log_kappa):
        kappa = math.exp(log_kappa)
        return float((m * lam / (lam + kappa)).sum()) - n

    lo, hi = -80.0, 20.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if excess(mid) > 0:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))
'''),
    dict(cell="solve_kappa", why="a fixed-point iteration kappa <- (ridge + kappa S(kappa)) / n stopped after 30 steps",
         source='''
def solve_kappa(eigenvalues, multiplicities, n, ridge):
    lam, m = eigenvalues.double(), multiplicities.double()
    if ridge == 0 and float(m[lam > 0].sum()) <= n:
        return 0.0
    kappa = float((m * lam).sum()) / n
    for _ in range(30):
        kappa = (ridge + kappa * float((m * lam / (lam + kappa)).sum())) / n
    return kappa
'''),
    # ---- Exercise 4: samples_for_learnability ------------------------------------------------------
    dict(cell="samples_for_learnability", why="kappa = lambda (right only for learnability 1/2)",
         source='''
def samples_for_learnability(eigenvalues, multiplicities, index, learnability, ridge):
    lam, m = eigenvalues.double(), multiplicities.double()
    kappa = float(lam[index])
    return float((m * lam / (lam + kappa)).sum()) + ridge / kappa
'''),
    dict(cell="samples_for_learnability", why="the multiplicities ignored",
         source='''
def samples_for_learnability(eigenvalues, multiplicities, index, learnability, ridge):
    lam = eigenvalues.double()
    kappa = float(lam[index]) * (1 - learnability) / learnability
    return float((lam / (lam + kappa)).sum()) + ridge / kappa
'''),
    dict(cell="samples_for_learnability", why="the ridge term delta / kappa forgotten",
         source='''
def samples_for_learnability(eigenvalues, multiplicities, index, learnability, ridge):
    lam, m = eigenvalues.double(), multiplicities.double()
    kappa = float(lam[index]) * (1 - learnability) / learnability
    return float((m * lam / (lam + kappa)).sum())
'''),
    dict(cell="samples_for_learnability", why="counting heuristic: n = the number of modes with an eigenvalue at least as large",
         source='''
def samples_for_learnability(eigenvalues, multiplicities, index, learnability, ridge):
    lam, m = eigenvalues.double(), multiplicities.double()
    return float(m[lam >= lam[index]].sum())
'''),
    # ---- multiple choice --------------------------------------------------------------------------
    dict(cell="answer_stability", why="believes the mean loss multiplies the kernel by N (unstable)",
         source='ANSWER_STABILITY = "A"', visible=False),
    dict(cell="answer_stability", why="believes the same minimizer means the same gradient-descent path",
         source='ANSWER_STABILITY = "B"', visible=False),
    dict(cell="answer_spectral_bias", why="calls spectral bias 'benign overfitting'",
         source='ANSWER_SPECTRAL_BIAS = "A"', visible=False),
    dict(cell="answer_spectral_bias", why="believes high frequencies need the rich regime to be represented",
         source='ANSWER_SPECTRAL_BIAS = "C"', visible=False),
    dict(cell="answer_lambda_min", why="lambda_min >= Omega(d) read as: more input dimensions train faster",
         source='ANSWER_LAMBDA_MIN = "A"', visible=False),
    dict(cell="answer_lambda_min", why="believes the kernel is diagonal for d > N and fits in one step",
         source='ANSWER_LAMBDA_MIN = "D"', visible=False),
]
