"""Small helpers shared by the test modules."""
import numpy as np


def close(actual, expected, rtol, atol):
    """numpy's assert_allclose on tensors or arrays (cheaper to import than torch.testing)."""
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol)
