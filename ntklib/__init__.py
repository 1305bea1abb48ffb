"""ntklib: analytic and empirical neural tangent kernels in PyTorch.

One architecture, two views::

    import ntklib as nk
    arch = nk.serial(nk.Dense(512, W_std=1.5, b_std=0.1), nk.Relu(), nk.Dense(1, W_std=1.5, b_std=0.1))
    k = arch.kernel(x1, x2)                 # infinite width: k.nngp, k.ntk  (n1, n2)
    net = arch.module(in_dim=x1.shape[1])   # a finite torch.nn.Module from the same layers
    theta = nk.empirical_ntk(net, x1, x2)   # its tangent kernel, converging to k.ntk as width grows
"""
from .validation import default_device
from .activations import (ABRelu, Abs, Activation, Elementwise, Erf, Gelu, Identity, LeakyRelu, Relu,
                          Sigmoid, Sin, Tanh)
from .conv import AvgPool, Conv, Flatten, GlobalAvgPool
from .empirical import empirical_nngp, empirical_ntk
from .kernel import Kernel
from .layers import Dense, Layer, Serial, serial
from .monte_carlo import MonteCarloKernel, monte_carlo_kernel
from .networks import (ActivationModule, AvgPoolModule, ConvModule, DenseModule, FlattenModule, GlobalAvgPoolModule,
                       SerialModule)

__version__ = "0.1.0"

__all__ = [
    "Kernel", "Layer", "Dense", "Serial", "serial", "Conv", "AvgPool", "GlobalAvgPool", "Flatten",
    "Activation", "ABRelu", "Relu", "LeakyRelu", "Abs", "Identity", "Erf", "Sin", "Gelu", "Elementwise",
    "Tanh", "Sigmoid",
    "DenseModule", "ActivationModule", "SerialModule", "ConvModule", "AvgPoolModule", "GlobalAvgPoolModule",
    "FlattenModule",
    "empirical_ntk", "empirical_nngp", "monte_carlo_kernel", "MonteCarloKernel", "default_device",
]

# the deep limit (correlation maps, normalized kernels) and depth-induced (shortcut) kernels: docs/depth.md;
# the sweeps that measure the papers' claims are in ntklib.experiments (imported on demand, never by the library)
from . import deep_limit  # noqa: E402
from .shortcut import Shortcut, ShortcutModule  # noqa: E402
from . import shortcut_ensemble  # noqa: E402  many finite shortcut networks as batched tensors (Monte Carlo)

__all__ += ["deep_limit", "Shortcut", "ShortcutModule"]

# training dynamics, kernel regression, spectra, data sets: docs/dynamics.md
from . import course, data, dynamics, linalg, predict, regression, spectral, training, validation  # noqa: E402
from .dynamics import gradient_flow_mse  # noqa: E402
from .regression import gp_posterior, kernel_regression  # noqa: E402
from .training import train_network  # noqa: E402

__all__ += ["course", "data", "dynamics", "linalg", "predict", "regression", "spectral", "training", "validation",
            "gradient_flow_mse", "train_network", "gp_posterior", "kernel_regression"]
