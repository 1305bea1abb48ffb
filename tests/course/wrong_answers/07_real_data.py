"""Plausible wrong answers for notebook 07 (format: tests/course/test_wrong_answers.py)."""

WRONG_ANSWERS = [
    # ---- Exercise 1: one-hot kernel classification ------------------------------------------------------
    dict(cell="kernel_classify", why="diag_reg used as an absolute ridge (lambda = diag_reg), not relative to tr(K)/n",
         source='''
def kernel_classify(k_train_train, k_test_train, labels_train, n_classes, diag_reg):
    n = k_train_train.shape[0]
    y = torch.nn.functional.one_hot(labels_train.long(), n_classes).to(k_train_train.dtype)
    chol = torch.linalg.cholesky(k_train_train + diag_reg * torch.eye(n, dtype=k_train_train.dtype))
    return (k_test_train @ torch.cholesky_solve(y, chol)).argmax(dim=1)
'''),
    dict(cell="kernel_classify", why="the ridge relative to the trace tr(K), forgetting the 1/n",
         source='''
def kernel_classify(k_train_train, k_test_train, labels_train, n_classes, diag_reg):
    n = k_train_train.shape[0]
    y = torch.nn.functional.one_hot(labels_train.long(), n_classes).to(k_train_train.dtype)
    lam = diag_reg * torch.diagonal(k_train_train).sum()
    chol = torch.linalg.cholesky(k_train_train + lam * torch.eye(n, dtype=k_train_train.dtype))
    return (k_test_train @ torch.cholesky_solve(y, chol)).argmax(dim=1)
'''),
    dict(cell="kernel_classify", why="one regression on the integer labels, rounded to the nearest class",
         source='''
def kernel_classify(k_train_train, k_test_train, labels_train, n_classes, diag_reg):
    n = k_train_train.shape[0]
    lam = diag_reg * torch.diagonal(k_train_train).mean()
    chol = torch.linalg.cholesky(k_train_train + lam * torch.eye(n, dtype=k_train_train.dtype))
    scores = k_test_train @ torch.cholesky_solve(labels_train.to(k_train_train.dtype)[:, None], chol)
    return scores[:, 0].round().clamp(0, n_classes - 1).long()
'''),
    dict(cell="kernel_classify", why="the ridge added to every entry of K (K + lambda) instead of its diagonal",
         source='''
def kernel_classify(k_train_train, k_test_train, labels_train, n_classes, diag_reg):
    y = torch.nn.functional.one_hot(labels_train.long(), n_classes).to(k_train_train.dtype)
    lam = diag_reg * torch.diagonal(k_train_train).mean()
    return (k_test_train @ torch.linalg.solve(k_train_train + lam, y)).argmax(dim=1)
'''),
    dict(cell="kernel_classify", why="no ridge at all (the interpolant), ignoring diag_reg",
         source='''
def kernel_classify(k_train_train, k_test_train, labels_train, n_classes, diag_reg):
    y = torch.nn.functional.one_hot(labels_train.long(), n_classes).to(k_train_train.dtype)
    return (k_test_train @ torch.linalg.lstsq(k_train_train, y).solution).argmax(dim=1)
'''),
    dict(cell="kernel_classify", why="the class with the smallest score (argmin)",
         source='''
def kernel_classify(k_train_train, k_test_train, labels_train, n_classes, diag_reg):
    n = k_train_train.shape[0]
    y = torch.nn.functional.one_hot(labels_train.long(), n_classes).to(k_train_train.dtype)
    lam = diag_reg * torch.diagonal(k_train_train).mean()
    chol = torch.linalg.cholesky(k_train_train + lam * torch.eye(n, dtype=k_train_train.dtype))
    return (k_test_train @ torch.cholesky_solve(y, chol)).argmin(dim=1)
'''),
    # ---- Exercise 2: validation -------------------------------------------------------------------------
    dict(cell="choose_diag_reg", why="accuracy measured on the points the model was fitted on (training accuracy)",
         source='''
def choose_diag_reg(k_train_train, labels_train, n_classes, diag_regs, n_val):
    m = k_train_train.shape[0] - n_val
    accs = torch.stack([(kernel_classify(k_train_train[:m, :m], k_train_train[:m, :m], labels_train[:m], n_classes, r)
                         == labels_train[:m]).double().mean() for r in diag_regs])
    best = max(range(len(diag_regs)), key=lambda i: (float(accs[i]), diag_regs[i]))
    return float(diag_regs[best]), accs
'''),
    dict(cell="choose_diag_reg", why="fitted on all n points, the validation points included",
         source='''
def choose_diag_reg(k_train_train, labels_train, n_classes, diag_regs, n_val):
    m = k_train_train.shape[0] - n_val
    accs = torch.stack([(kernel_classify(k_train_train, k_train_train[m:], labels_train, n_classes, r)
                         == labels_train[m:]).double().mean() for r in diag_regs])
    best = max(range(len(diag_regs)), key=lambda i: (float(accs[i]), diag_regs[i]))
    return float(diag_regs[best]), accs
'''),
    dict(cell="choose_diag_reg", why="ties broken towards the smallest diag_reg (the first best)",
         source='''
def choose_diag_reg(k_train_train, labels_train, n_classes, diag_regs, n_val):
    m = k_train_train.shape[0] - n_val
    accs = torch.stack([(kernel_classify(k_train_train[:m, :m], k_train_train[m:, :m], labels_train[:m], n_classes, r)
                         == labels_train[m:]).double().mean() for r in diag_regs])
    return float(diag_regs[int(torch.argmax(accs))]), accs
'''),
    dict(cell="choose_diag_reg", why="the first n_val points as the validation set instead of the last",
         source='''
def choose_diag_reg(k_train_train, labels_train, n_classes, diag_regs, n_val):
    k, lab = k_train_train, labels_train
    accs = torch.stack([(kernel_classify(k[n_val:, n_val:], k[:n_val, n_val:], lab[n_val:], n_classes, r)
                         == lab[:n_val]).double().mean() for r in diag_regs])
    best = max(range(len(diag_regs)), key=lambda i: (float(accs[i]), diag_regs[i]))
    return float(diag_regs[best]), accs
'''),
    dict(cell="choose_diag_reg", why="the index of the best value returned instead of the value",
         source='''
def choose_diag_reg(k_train_train, labels_train, n_classes, diag_regs, n_val):
    m = k_train_train.shape[0] - n_val
    accs = torch.stack([(kernel_classify(k_train_train[:m, :m], k_train_train[m:, :m], labels_train[:m], n_classes, r)
                         == labels_train[m:]).double().mean() for r in diag_regs])
    return float(max(range(len(diag_regs)), key=lambda i: (float(accs[i]), diag_regs[i]))), accs
'''),
    # ---- Exercise 3: learning-curve exponents -------------------------------------------------------------
    dict(cell="learning_curve_exponents", why="the modes not sorted by decreasing eigenvalue before the tail sum",
         source='''
def learning_curve_exponents(ns, test_mse, eigenvalues, target_power, k_min, k_max):
    def neg_slope(x, y):
        return -float(np.polyfit(np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float)), 1)[0])
    power = torch.as_tensor(target_power, dtype=torch.float64)
    tail = power.flip(0).cumsum(0).flip(0)
    k = torch.arange(int(k_min), int(k_max) + 1)
    return neg_slope(ns, test_mse), neg_slope(k, tail[k])
'''),
    dict(cell="learning_curve_exponents", why="the decay exponent of the eigenvalues taken as the learning-curve exponent",
         source='''
def learning_curve_exponents(ns, test_mse, eigenvalues, target_power, k_min, k_max):
    def neg_slope(x, y):
        return -float(np.polyfit(np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float)), 1)[0])
    lam = torch.sort(torch.as_tensor(eigenvalues, dtype=torch.float64), descending=True).values
    k = torch.arange(int(k_min), int(k_max) + 1)
    return neg_slope(ns, test_mse), neg_slope(k, lam[k - 1])
'''),
    dict(cell="learning_curve_exponents", why="the power already learned (cumulative sum of the top k) instead of the tail",
         source='''
def learning_curve_exponents(ns, test_mse, eigenvalues, target_power, k_min, k_max):
    def neg_slope(x, y):
        return -float(np.polyfit(np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float)), 1)[0])
    order = torch.argsort(torch.as_tensor(eigenvalues, dtype=torch.float64), descending=True)
    cum = torch.as_tensor(target_power, dtype=torch.float64)[order].cumsum(0)
    k = torch.arange(int(k_min), int(k_max) + 1)
    return neg_slope(ns, test_mse), neg_slope(k, cum[k - 1])
'''),
    dict(cell="learning_curve_exponents", why="the k-th mode counted in the tail (T(k) summed from the k-th mode on)",
         source='''
def learning_curve_exponents(ns, test_mse, eigenvalues, target_power, k_min, k_max):
    def neg_slope(x, y):
        return -float(np.polyfit(np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float)), 1)[0])
    order = torch.argsort(torch.as_tensor(eigenvalues, dtype=torch.float64), descending=True)
    tail = torch.as_tensor(target_power, dtype=torch.float64)[order].flip(0).cumsum(0).flip(0)
    k = torch.arange(int(k_min), int(k_max) + 1)
    return neg_slope(ns, test_mse), neg_slope(k, tail[k - 1])
'''),
    dict(cell="learning_curve_exponents", why="the slopes returned as they come out of the fit (negative numbers)",
         source='''
def learning_curve_exponents(ns, test_mse, eigenvalues, target_power, k_min, k_max):
    def slope(x, y):
        return float(np.polyfit(np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float)), 1)[0])
    order = torch.argsort(torch.as_tensor(eigenvalues, dtype=torch.float64), descending=True)
    tail = torch.as_tensor(target_power, dtype=torch.float64)[order].flip(0).cumsum(0).flip(0)
    k = torch.arange(int(k_min), int(k_max) + 1)
    return slope(ns, test_mse), slope(k, tail[k])
'''),
    # ---- multiple choice --------------------------------------------------------------------------------
    dict(cell="answer_shuffle", why="believes the bias term makes the fully connected kernel see positions",
         source='ANSWER_SHUFFLE = "A"', visible=False),
    dict(cell="answer_shuffle", why="believes a very deep kernel reacts to the shuffle",
         source='ANSWER_SHUFFLE = "D"', visible=False),
    dict(cell="answer_coding", why="believes centring the targets changes the decisions",
         source='ANSWER_CODING = "A"', visible=False),
    dict(cell="answer_coding", why="believes a relative ridge changes with the kernel's scale",
         source='ANSWER_CODING = "D"', visible=False),
    dict(cell="answer_depth", why="believes deep kernels overfit because deep networks have more parameters",
         source='ANSWER_DEPTH = "A"', visible=False),
    dict(cell="answer_depth", why="believes ReLU halves the information at each layer",
         source='ANSWER_DEPTH = "D"', visible=False),
]
