"""Grading integrity for the course's nbgrader pipeline: student code is hostile input.

``nbgrader autograde`` with the course's ``nbgrader_config.py`` uses these modules:

* :mod:`~ntklib.grading.sandbox` -- the student's kernel under bubblewrap: no files of the course,
  a scratch copy of the submission, no network, no new processes, limited memory;
* :mod:`~ntklib.grading.kernel` -- driving that kernel with deadlines, capped output, restarts;
* :mod:`~ntklib.grading.agent` -- the few lines inside the kernel that answer the checker, in plain
  data (:mod:`~ntklib.grading.wire`);
* :mod:`~ntklib.grading.analysis`, :mod:`~ntklib.grading.checker` -- the graded test cells run in
  a trusted namespace outside the student's process, from the source notebook's instructor cells;
* :mod:`~ntklib.grading.shortcuts` -- ``assert_not_calling`` at grading time: a static reading of
  the code the student wrote;
* :mod:`~ntklib.grading.executor` -- nbgrader's Execute step for autograde, with the budgets;
* :mod:`~ntklib.grading.feedback` -- feedback without hidden tests;
* :mod:`~ntklib.grading.ledger` -- manual grades in a signed ledger, audited by ``nbgrader export``.

What is protected and what is not: ``docs/instructors.md``, section 3. Submodules are imported on
demand (this package imports nothing heavy by itself).
"""
