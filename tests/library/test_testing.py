"""ntklib.testing: the grading helpers pass what they must, fail what they must, and say why."""
import numpy as np
import pytest
import torch

import ntklib as nk
from ntklib.testing import assert_choice, assert_close, assert_not_calling, assert_shape


def _message(fn, *args, **kwargs) -> str:
    with pytest.raises(AssertionError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_assert_close_tolerance_is_numpys_allclose_rule():
    expected = np.array([1.0, -2.0, 1e-3])
    for scale in (0.5, 0.999, 1.001, 2.0):  # just inside and outside atol + rtol |e|
        actual = expected + scale * (1e-8 + 1e-6 * np.abs(expected))
        inside = scale <= 1.0
        assert np.allclose(actual, expected, rtol=1e-6, atol=1e-8) == inside
        if inside:
            assert_close(actual, expected, "v", rtol=1e-6, atol=1e-8)
        else:
            assert "differ" in _message(assert_close, actual, expected, "v", rtol=1e-6, atol=1e-8)


def test_assert_close_accepts_tensors_with_grad_lists_and_scalars():
    t = torch.ones(3, dtype=torch.float64, requires_grad=True)
    assert_close(t * 2, [2.0, 2.0, 2.0], "doubled")
    assert_close(3.0, np.float64(3.0), "a scalar")
    assert_close(torch.tensor(3.0), 3.0, "a 0-d tensor")


def test_assert_close_failure_names_the_quantity_the_index_and_the_values():
    expected = np.arange(6.0).reshape(2, 3)
    actual = expected.copy()
    actual[1, 2] += 0.5
    msg = _message(assert_close, actual, expected, "the Gram matrix")
    assert msg.startswith("the Gram matrix:") and "(1, 2)" in msg and "got 5.5" in msg and "expected 5" in msg


@pytest.mark.parametrize("actual, hint", [
    (lambda e: e.T, "transpose"),
    (lambda e: -e, "opposite sign"),
    (lambda e: 0.5 * e, "times 0.5"),
])
def test_assert_close_hints_at_the_usual_mistakes(actual, hint):
    expected = np.array([[1.0, 2.0, 0.3], [4.0, 5.0, 6.0], [0.7, 8.0, 9.0]])
    assert hint in _message(assert_close, actual(expected), expected, "K")


def test_assert_close_rejects_shape_mismatch_none_and_nan():
    assert "shape is (3, 1), expected (3,)" in _message(assert_close, np.ones((3, 1)), np.ones(3), "mean")
    assert "looks transposed" in _message(assert_close, np.ones((2, 3)), np.zeros((3, 2)), "J")
    assert "forget to `return`" in _message(assert_close, None, np.ones(3), "mean")
    assert "NaN or infinite" in _message(assert_close, np.array([1.0, np.nan]), np.ones(2), "mean")
    assert "must be a torch.Tensor" in _message(assert_close, "abc", np.ones(2), "mean")
    assert "should hold numbers" in _message(assert_close, np.array(["a", "b"]), np.ones(2), "mean")


def test_assert_shape_wildcards_and_hints():
    assert_shape(torch.zeros(4, 7), (4, None), "J")
    assert "expected shape (4, 7), got (4, 7, 1)" in _message(assert_shape, np.zeros((4, 7, 1)), (4, 7), "J")
    assert "extra trailing axis" in _message(assert_shape, np.zeros((4, 1)), (4,), "y")
    assert "forget to `return`" in _message(assert_shape, None, (4,), "y")


def test_assert_choice_checks_the_form_not_the_answer():
    assert_choice(" b ", ["A", "B", "C"], "ANSWER")
    assert "still None" in _message(assert_choice, None, "ABCD", "ANSWER")
    assert "expected one of" in _message(assert_choice, "E", "ABCD", "ANSWER")


def _helper_calling_library(model, x):
    return nk.empirical_ntk(model, x)


def _direct(model, x):
    return nk.empirical_ntk(model, x)


def _through_helper(model, x):
    return _helper_calling_library(model, x)


def _imported_alias(model, x):
    from ntklib import empirical_ntk as e
    return e(model, x)


def _by_string(model, x):
    return getattr(nk, "empirical_ntk")(model, x)


def _honest(model, x):
    jac = torch.func.jacrev(lambda z: model(z).sum())(x)  # (n, d)
    return jac @ jac.T


@pytest.mark.parametrize("func", [_direct, _through_helper, _imported_alias, _by_string])
def test_assert_not_calling_catches_direct_aliased_indirect_and_getattr_calls(func):
    msg = _message(assert_not_calling, func, ["empirical_ntk"], "your function")
    assert "'empirical_ntk'" in msg
    if func is _through_helper:
        assert "_helper_calling_library" in msg


def test_assert_not_calling_passes_honest_code_and_accepts_functions_as_names():
    assert_not_calling(_honest, ["empirical_ntk", nk.empirical_nngp])
    assert "'empirical_ntk'" in _message(assert_not_calling, _direct, [nk.empirical_ntk])


def test_assert_not_calling_reads_bytecode_when_source_is_missing():
    namespace = {}
    exec(compile("import ntklib as nk\ndef f(m, x):\n    return nk.empirical_ntk(m, x)\n", "<no file>", "exec"),
         namespace)
    assert "'empirical_ntk'" in _message(assert_not_calling, namespace["f"], ["empirical_ntk"])


# --- exact types: a rigged object cannot answer a comparison ----------------------------------------
class _RiggedTensor(torch.Tensor):
    pass


class _ArrayLike:
    def __array__(self, dtype=None, copy=None):  # what a cheat would make return the expected value
        return np.ones(2)


class _EqualsEverything(str):
    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


@pytest.mark.parametrize("rigged", [_RiggedTensor(torch.ones(2)), _ArrayLike(), [_ArrayLike(), 1.0],
                                    np.ones(2).view(np.recarray)])
def test_assert_close_and_shape_reject_subclasses_and_array_likes(rigged):
    assert "must be a torch.Tensor" in _message(assert_close, rigged, np.ones(2), "v")
    assert "must be a torch.Tensor" in _message(assert_shape, rigged, (2,), "v")


def test_assert_close_accepts_the_exact_types_it_lists():
    for ok in (torch.ones(2), torch.nn.Parameter(torch.ones(2)), np.ones(2), [1, 1.0], (np.float64(1.0), True)):
        assert_close(ok, [1.0, 1.0], "v")
    assert_close(np.float32(2.0), 2, "a numpy scalar")


def test_assert_choice_rejects_a_string_subclass_equal_to_everything():
    assert "must be a string" in _message(assert_choice, _EqualsEverything("Z"), "ABCD", "ANSWER")
    assert "expected one of" in _message(assert_choice, "Z", "ABCD", "ANSWER")


# --- assert_not_calling follows objects, not just names ---------------------------------------------
inverse_by_another_name = np.linalg.inv
_private_helper = nk.empirical._group_jacobian


def _renamed_global(k, y):
    return inverse_by_another_name(k) @ y


def _closure_factory():
    solve = torch.linalg.inv

    def inner(k, y):
        return solve(k) @ y
    return inner


_SOLVER = np.linalg.inv


def _default_argument(k, y, solve=_SOLVER):
    return solve(k) @ y


def _module_of_a_forbidden_module(k1, k2, y):
    return nk.kernel_regression(k1, k2, y)  # defined in ntklib.regression


def _private_ntklib(model, params, group):
    return _private_helper(model, params, group)


def _computed_getattr(model, x):
    name = "_".join(["empirical", "ntk"])
    return getattr(nk, name)(model, x)


def _through_eval(model, x):
    return eval("nk.empirical_ntk")(model, x)


def _through_importlib(model, x):
    import importlib
    return importlib.import_module("ntklib.emp" + "irical")


@pytest.mark.parametrize("func, forbidden, expected", [
    (_renamed_global, ["inv"], "inverse_by_another_name"),
    (_closure_factory(), ["inv"], "solve"),
    (_default_argument, ["inv"], "default argument"),
    (_module_of_a_forbidden_module, ["regression"], "ntklib.regression"),
    (_private_ntklib, ["empirical_ntk"], "private part of ntklib"),
    (_computed_getattr, ["empirical_ntk"], "computed name"),
    (_through_eval, ["empirical_ntk"], "eval"),
    (_through_importlib, ["empirical_ntk"], "importlib"),
])
def test_assert_not_calling_resolves_objects_whatever_they_are_bound_to(func, forbidden, expected):
    msg = _message(assert_not_calling, func, forbidden, "f")
    assert expected in msg, msg


def test_assert_not_calling_passes_honest_code_that_uses_allowed_building_blocks():
    def krr(k, k_star, y, ridge):
        chol = torch.linalg.cholesky(k + ridge * torch.eye(k.shape[0]))  # (n, n)
        return k_star @ torch.cholesky_solve(y[:, None], chol)[:, 0]  # (m,)

    assert_not_calling(krr, ["KernelRidge", "inv", "pinv", "lstsq", "regression", "kernel_regression"], "krr")


def gp_posterior(k, y):  # the student's own function, named like a forbidden library function
    return k @ y


def _uses_own_function(k, y):
    return gp_posterior(k, y) + 1


def test_assert_not_calling_allows_the_students_own_function_with_a_forbidden_name():
    assert_not_calling(_uses_own_function, ["gp_posterior", "regression"], "loo")
    assert "gp_posterior" in _message(assert_not_calling, lambda k, y: nk.gp_posterior(k, y), ["gp_posterior"])


SETTINGS = {"depth": 3}  # an unhashable global that a student function reads


def _reads_a_dict_global(x):
    return x * SETTINGS["depth"]


def test_assert_not_calling_follows_unhashable_globals():
    assert_not_calling(_reads_a_dict_global, ["empirical_ntk", "regression"])
