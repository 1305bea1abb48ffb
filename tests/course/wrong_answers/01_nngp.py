"""Plausible wrong answers for notebook 01 (format: tests/course/test_wrong_answers.py)."""

WRONG_ANSWERS = [
    # ---- Exercise 1: relu_output_kurtosis
    dict(cell="relu_output_kurtosis", why="the bias-free 15/n used with biases",
         source='''
def relu_output_kurtosis(width, W_std, b_std, q0):
    return 15.0 / width
'''),
    dict(cell="relu_output_kurtosis", why="the first-layer bias forgotten in the variance of the hidden pre-activations",
         source='''
def relu_output_kurtosis(width, W_std, b_std, q0):
    s = W_std**2 * q0
    mean_k = W_std**2 * s / 2 + b_std**2
    var_k = W_std**4 * (3 * s**2 / 2 - s**2 / 4) / width
    return float(3 * var_k / mean_k**2)
'''),
    dict(cell="relu_output_kurtosis", why="the readout bias forgotten in E[K_hat] (gives 15/n whatever the biases)",
         source='''
def relu_output_kurtosis(width, W_std, b_std, q0):
    s = W_std**2 * q0 + b_std**2
    mean_k = W_std**2 * s / 2
    var_k = W_std**4 * (3 * s**2 / 2 - s**2 / 4) / width
    return float(3 * var_k / mean_k**2)
'''),
    dict(cell="relu_output_kurtosis", why="E[relu(z)^4] used for the variance of relu(z)^2 (the mean squared not subtracted)",
         source='''
def relu_output_kurtosis(width, W_std, b_std, q0):
    s = W_std**2 * q0 + b_std**2
    mean_k = W_std**2 * s / 2 + b_std**2
    var_k = W_std**4 * (3 * s**2 / 2) / width
    return float(3 * var_k / mean_k**2)
'''),
    dict(cell="relu_output_kurtosis", why="the kurtosis E f^4 / (E f^2)^2 returned instead of the excess kurtosis",
         source='''
def relu_output_kurtosis(width, W_std, b_std, q0):
    s = W_std**2 * q0 + b_std**2
    mean_k = W_std**2 * s / 2 + b_std**2
    var_k = W_std**4 * (3 * s**2 / 2 - s**2 / 4) / width
    return float(3 + 3 * var_k / mean_k**2)
'''),
    dict(cell="relu_output_kurtosis", why="the factor 3 of E f^4 = 3 E[K_hat^2] forgotten",
         source='''
def relu_output_kurtosis(width, W_std, b_std, q0):
    s = W_std**2 * q0 + b_std**2
    mean_k = W_std**2 * s / 2 + b_std**2
    var_k = W_std**4 * (3 * s**2 / 2 - s**2 / 4) / width
    return float(var_k / mean_k**2)
'''),
    dict(cell="relu_output_kurtosis", why="b_std instead of b_std^2 for the variance the biases add",
         source='''
def relu_output_kurtosis(width, W_std, b_std, q0):
    s = W_std**2 * q0 + b_std
    mean_k = W_std**2 * s / 2 + b_std
    var_k = W_std**4 * (3 * s**2 / 2 - s**2 / 4) / width
    return float(3 * var_k / mean_k**2)
'''),
    # ---- Exercise 2: abrelu_nngp_map
    dict(cell="abrelu_nngp_map", why="no clamp of the correlation before arccos (NaN when x = x' up to rounding)",
         source='''
def abrelu_nngp_map(s11, s22, s12, a, b):
    s11, s22, s12 = (torch.as_tensor(t, dtype=torch.float64) for t in (s11, s22, s12))
    norm = torch.sqrt(s11 * s22)
    theta = torch.acos(s12 / norm)
    arc = lambda th: torch.sin(th) + (math.pi - th) * torch.cos(th)
    return norm / (2 * math.pi) * ((a * a + b * b) * arc(theta) - 2 * a * b * arc(math.pi - theta))
'''),
    dict(cell="abrelu_nngp_map", why="the cross terms relu(u) relu(-v) forgotten: (a^2 + b^2) times the ReLU kernel",
         source='''
def abrelu_nngp_map(s11, s22, s12, a, b):
    s11, s22, s12 = (torch.as_tensor(t, dtype=torch.float64) for t in (s11, s22, s12))
    norm = torch.sqrt(s11 * s22)
    cos = torch.clamp(s12 / norm, -1.0, 1.0)
    theta = torch.acos(cos)
    return (a * a + b * b) * norm / (2 * math.pi) * (torch.sin(theta) + (math.pi - theta) * cos)
'''),
    dict(cell="abrelu_nngp_map", why="the cross terms at angle theta instead of pi - theta",
         source='''
def abrelu_nngp_map(s11, s22, s12, a, b):
    s11, s22, s12 = (torch.as_tensor(t, dtype=torch.float64) for t in (s11, s22, s12))
    norm = torch.sqrt(s11 * s22)
    cos = torch.clamp(s12 / norm, -1.0, 1.0)
    theta = torch.acos(cos)
    arc = torch.sin(theta) + (math.pi - theta) * cos
    return norm / (2 * math.pi) * ((a * a + b * b) * arc - 2 * a * b * arc)
'''),
    dict(cell="abrelu_nngp_map", why="the cross terms added instead of subtracted (phi = b relu(t) + a relu(-t))",
         source='''
def abrelu_nngp_map(s11, s22, s12, a, b):
    s11, s22, s12 = (torch.as_tensor(t, dtype=torch.float64) for t in (s11, s22, s12))
    norm = torch.sqrt(s11 * s22)
    cos = torch.clamp(s12 / norm, -1.0, 1.0)
    theta = torch.acos(cos)
    arc = lambda th: torch.sin(th) + (math.pi - th) * torch.cos(th)
    return norm / (2 * math.pi) * ((a * a + b * b) * arc(theta) + 2 * a * b * arc(math.pi - theta))
'''),
    dict(cell="abrelu_nngp_map", why="the unit-variance (lesson's) formula: cos(theta) = Sigma12 and no sqrt(Sigma11 Sigma22)",
         source='''
def abrelu_nngp_map(s11, s22, s12, a, b):
    cos = torch.clamp(torch.as_tensor(s12, dtype=torch.float64), -1.0, 1.0)
    theta = torch.acos(cos)
    arc = lambda th: torch.sin(th) + (math.pi - th) * torch.cos(th)
    return ((a * a + b * b) * arc(theta) - 2 * a * b * arc(math.pi - theta)) / (2 * math.pi)
'''),
    dict(cell="abrelu_nngp_map", why="the right angle but without the prefactor sqrt(Sigma11 Sigma22)",
         source='''
def abrelu_nngp_map(s11, s22, s12, a, b):
    s11, s22, s12 = (torch.as_tensor(t, dtype=torch.float64) for t in (s11, s22, s12))
    cos = torch.clamp(s12 / torch.sqrt(s11 * s22), -1.0, 1.0)
    theta = torch.acos(cos)
    arc = lambda th: torch.sin(th) + (math.pi - th) * torch.cos(th)
    return ((a * a + b * b) * arc(theta) - 2 * a * b * arc(math.pi - theta)) / (2 * math.pi)
'''),
    # ---- Exercise 3: the worked example
    dict(cell="k_x1_xstar", why="the lesson's value 0.4", source="K_x1_xstar = 0.4"),
    dict(cell="k_x1_xstar", why="the unit-sphere formula with u = x1.x* = 1 (gives 0.5)",
         source="K_x1_xstar = float((math.sqrt(1 - 1.0**2) + 1.0 * (math.pi - math.acos(1.0))) / (2 * math.pi))"),
    dict(cell="k_x1_xstar", why="the right angle pi/4 but no factor |x1| |x*| = sqrt(2) (gives 0.378)",
         source="K_x1_xstar = float((math.sin(math.pi / 4) + (math.pi - math.pi / 4) * math.cos(math.pi / 4)) / (2 * math.pi))"),
    # ---- Exercise 4: erf_derivative_kernel
    dict(cell="erf_derivative_kernel", why="the denominator with one variance used twice (right only for equal variances)",
         source='''
def erf_derivative_kernel(s11, s22, s12, b=1.0):
    s11, s22, s12 = (torch.as_tensor(t, dtype=torch.float64) for t in (s11, s22, s12))
    two_b2 = 2 * b * b
    return 4 * b * b / math.pi / torch.sqrt((1 + two_b2 * s11) ** 2 - two_b2**2 * s12**2)
'''),
    dict(cell="erf_derivative_kernel", why="the denominator with the average variance (right only for equal variances)",
         source='''
def erf_derivative_kernel(s11, s22, s12, b=1.0):
    s11, s22, s12 = (torch.as_tensor(t, dtype=torch.float64) for t in (s11, s22, s12))
    two_b2 = 2 * b * b
    return 4 * b * b / math.pi / torch.sqrt((1 + two_b2 * (s11 + s22) / 2) ** 2 - two_b2**2 * s12**2)
'''),
    dict(cell="erf_derivative_kernel", why="1 / det(I + 2 b^2 Lambda) instead of its inverse square root",
         source='''
def erf_derivative_kernel(s11, s22, s12, b=1.0):
    s11, s22, s12 = (torch.as_tensor(t, dtype=torch.float64) for t in (s11, s22, s12))
    two_b2 = 2 * b * b
    return 4 * b * b / math.pi / ((1 + two_b2 * s11) * (1 + two_b2 * s22) - two_b2**2 * s12**2)
'''),
    dict(cell="erf_derivative_kernel", why="the derivative of arcsin without the chain-rule factor 2 b^2 / sqrt(P)",
         source='''
def erf_derivative_kernel(s11, s22, s12, b=1.0):
    s11, s22, s12 = (torch.as_tensor(t, dtype=torch.float64) for t in (s11, s22, s12))
    two_b2 = 2 * b * b
    p = (1 + two_b2 * s11) * (1 + two_b2 * s22)
    return 2 / math.pi / torch.sqrt(1 - two_b2**2 * s12**2 / p)
'''),
    dict(cell="erf_derivative_kernel", why="phi'(t) = (2 / sqrt(pi)) exp(-b^2 t^2): the inner factor b of the chain rule forgotten",
         source='''
def erf_derivative_kernel(s11, s22, s12, b=1.0):
    s11, s22, s12 = (torch.as_tensor(t, dtype=torch.float64) for t in (s11, s22, s12))
    two_b2 = 2 * b * b
    return 4 / math.pi / torch.sqrt((1 + two_b2 * s11) * (1 + two_b2 * s22) - two_b2**2 * s12**2)
'''),
    dict(cell="erf_derivative_kernel", why="det(I + b^2 Lambda): the Gaussian exponent read as -y^T A y with A = b^2 I, not -y^T A y / 2",
         source='''
def erf_derivative_kernel(s11, s22, s12, b=1.0):
    s11, s22, s12 = (torch.as_tensor(t, dtype=torch.float64) for t in (s11, s22, s12))
    b2 = b * b
    return 4 * b2 / math.pi / torch.sqrt((1 + b2 * s11) * (1 + b2 * s22) - b2**2 * s12**2)
'''),
    # ---- Exercise 5: leaky ReLU criticality
    dict(cell="leaky_criticality", why="the ReLU values 2 and b^2 / (1 - W^2 / 2) used for leaky ReLU",
         source='''
def leaky_critical_W_std2(alpha):
    return 2.0


def leaky_variance_fixed_point(W_std, b_std, alpha):
    return b_std**2 / (1.0 - W_std**2 / 2)
'''),
    dict(cell="leaky_criticality", why="E[phi(u)^2] = (1 + alpha) q / 2 (the slope not squared)",
         source='''
def leaky_critical_W_std2(alpha):
    return 2.0 / (1.0 + alpha)


def leaky_variance_fixed_point(W_std, b_std, alpha):
    return b_std**2 / (1.0 - W_std**2 * (1.0 + alpha) / 2)
'''),
    dict(cell="leaky_criticality", why="E[phi(u)^2] = (1 + alpha^2) q (the factor 1/2 forgotten)",
         source='''
def leaky_critical_W_std2(alpha):
    return 1.0 / (1.0 + alpha**2)


def leaky_variance_fixed_point(W_std, b_std, alpha):
    return b_std**2 / (1.0 - W_std**2 * (1.0 + alpha**2))
'''),
    dict(cell="leaky_criticality", why="right critical value, but the fixed point of the post-activation variance E[phi(u)^2]",
         source='''
def leaky_critical_W_std2(alpha):
    return 2.0 / (1.0 + alpha**2)


def leaky_variance_fixed_point(W_std, b_std, alpha):
    q = b_std**2 / (1.0 - W_std**2 * (1.0 + alpha**2) / 2)
    return (1.0 + alpha**2) * q / 2
'''),
    # ---- Quiz (full tests: a visible test cannot reject a wrong letter without giving the right one away)
    dict(cell="quiz_answers", why="Q1: the NNGP kernel confused with the NTK (the kernel of training)",
         source='ANSWER_Q1 = "B"\nANSWER_Q2 = "B"\nANSWER_Q3 = "B"\nANSWER_Q4 = "B"', visible=False),
    dict(cell="quiz_answers", why="Q2: 'Gaussian weights make the output Gaussian' at any width",
         source='ANSWER_Q1 = "A"\nANSWER_Q2 = "A"\nANSWER_Q3 = "B"\nANSWER_Q4 = "B"', visible=False),
    dict(cell="quiz_answers", why="Q3: outputs correlated through the shared hidden layers",
         source='ANSWER_Q1 = "A"\nANSWER_Q2 = "B"\nANSWER_Q3 = "C"\nANSWER_Q4 = "B"', visible=False),
    dict(cell="quiz_answers", why="Q4: phi on the raw input taken for the same network written differently (the lesson's error)",
         source='ANSWER_Q1 = "A"\nANSWER_Q2 = "B"\nANSWER_Q3 = "B"\nANSWER_Q4 = "A"', visible=False),
]
