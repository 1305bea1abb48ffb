"""Plausible wrong answers for notebook 05 (format: tests/course/test_wrong_answers.py)."""

_NTK_D = '''
def ntk_d(x1, x2, K, hbar, W_std, b_std, readout_std):
    total = 0.0
    for kappa in {kappas}:
        hidden = [nk.Dense(1, W_std, b_std), nk.Relu()] * ({depth})
        total = total + nk.serial(*hidden, nk.Dense(1, readout_std, None)).kernel(x1, x2, get="{kernel}").{kernel}
    return total / ({norm})
'''

_FLUCT = '''
def predicted_fluctuation(K, mu0, mu, sd, rho):
    K = torch.as_tensor(K, dtype=torch.float64)
    return torch.sqrt({variance}) / ({mean})
'''

_LOGQ = '''
def log_norm_covariance(l1, l2, width):
    live = np.arange(1, width + 1)
    p = stats.binom.pmf(live, width, 0.5)
    p = p / p.sum()
    psi = special.digamma(live / 2)
    v = {step}
    return float({walk} * v)
'''

_EXACT_STEP = "(p * special.polygamma(1, live / 2)).sum() + (p * psi ** 2).sum() - (p * psi).sum() ** 2"

WRONG_ANSWERS = [
    # Exercise 1: NTK(d) from plain kernels
    dict(cell="ntk_d", why="the summary's shortcut positions {hbar, ..., K hbar}: the input readout kappa = 0 forgotten, M = K",
         source=_NTK_D.format(kappas="range(1, K + 1)", depth="kappa * hbar", kernel="ntk", norm="K")),
    dict(cell="ntk_d", why="the readouts summed instead of averaged (no 1/M from the 1/sqrt(M) of each readout)",
         source=_NTK_D.format(kappas="range(K + 1)", depth="kappa * hbar", kernel="ntk", norm="1")),
    dict(cell="ntk_d", why="kappa = 0..K read out but divided by K (the summary's K shortcut positions taken as M_z)",
         source=_NTK_D.format(kappas="range(K + 1)", depth="kappa * hbar", kernel="ntk", norm="K")),
    dict(cell="ntk_d", why="readout kappa put at depth kappa instead of kappa * hbar",
         source=_NTK_D.format(kappas="range(K + 1)", depth="kappa", kernel="ntk", norm="K + 1")),
    dict(cell="ntk_d", why="the NNGP of each readout (the readout-weight part only) instead of its NTK",
         source=_NTK_D.format(kappas="range(K + 1)", depth="kappa * hbar", kernel="nngp", norm="K + 1")),
    # Exercise 2: the CLT over readouts
    dict(cell="predicted_fluctuation", why="the neighbour correlation ignored (independent readouts)",
         source=_FLUCT.format(variance="K * sd ** 2", mean="mu0 + K * mu")),
    dict(cell="predicted_fluctuation", why="K neighbouring pairs among K readouts instead of K - 1",
         source=_FLUCT.format(variance="sd ** 2 * (K + 2 * K * rho)", mean="mu0 + K * mu")),
    dict(cell="predicted_fluctuation", why="each neighbouring pair counted once in the variance of the sum, not twice",
         source=_FLUCT.format(variance="sd ** 2 * (K + (K - 1) * rho)", mean="mu0 + K * mu")),
    dict(cell="predicted_fluctuation", why="the input readout counted as random like the others (K + 1 variances)",
         source=_FLUCT.format(variance="sd ** 2 * (K + 1 + 2 * K * rho)", mean="mu0 + K * mu")),
    dict(cell="predicted_fluctuation", why="the input readout's mean taken to be mu like the others",
         source=_FLUCT.format(variance="sd ** 2 * (K + 2 * (K - 1) * rho)", mean="(K + 1) * mu")),
    dict(cell="predicted_fluctuation", why="the width CLT's intuition: the spread of one readout, not reduced by K",
         source=_FLUCT.format(variance="sd ** 2 * (1 + 2 * rho) + 0 * K", mean="mu")),
    # Exercise 3: the log-norm random walk
    dict(cell="log_norm_covariance", why="the delta method Var log Z ~ Var Z = 5/n, not exact at narrow width",
         source=_LOGQ.format(step="5 / width", walk="min(l1, l2)")),
    dict(cell="log_norm_covariance", why="the number of live units fixed at n/2 instead of Binomial(n, 1/2)",
         source=_LOGQ.format(step="special.polygamma(1, width / 4)", walk="min(l1, l2)")),
    dict(cell="log_norm_covariance", why="the law of total variance half applied: the variance of psi(B/2) over B left out",
         source=_LOGQ.format(step="(p * special.polygamma(1, live / 2)).sum()", walk="min(l1, l2)")),
    dict(cell="log_norm_covariance", why="different layers taken as independent (the readouts' J are independent)",
         source=_LOGQ.format(step=_EXACT_STEP, walk="(l1 if l1 == l2 else 0)")),
    dict(cell="log_norm_covariance", why="the shared part taken as sqrt(l1 l2) steps (correlation 1 between layers)",
         source=_LOGQ.format(step=_EXACT_STEP, walk="math.sqrt(l1 * l2)")),
    # Multiple choice (checked against the hidden tests)
    dict(cell="answer_concentration", why="independent readout weights taken to imply a law of large numbers",
         source='ANSWER_CONCENTRATION = "A"', visible=False),
    dict(cell="answer_concentration", why="the paper's reading: spacing the readouts apart makes them weakly dependent",
         source='ANSWER_CONCENTRATION = "C"', visible=False),
    dict(cell="answer_degradation", why="training invariance confused with the kernel's own behaviour with depth",
         source='ANSWER_DEGRADATION = "A"', visible=False),
    dict(cell="answer_degradation", why="weak dependence (a finite-width effect) credited for an infinite-width kernel",
         source='ANSWER_DEGRADATION = "D"', visible=False),
]
