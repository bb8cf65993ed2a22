"""distrain: a data-parallel deep-learning training runtime.

`import distrain` gives PyTorch's names for PyTorch's concepts: tensors and their
factories, dtypes, grad modes, the math functions, and the subpackages `autograd`, `nn`
and `cuda`. See README.md for a tour.
"""
import sys as _sys

from . import cuda
from .engine import Size, Tensor
from .engine import autograd
from .engine import nn
from .engine import optim
from .engine import jit  # static graphs: distrain.jit.trace, compile_step, explain, load, export_onnx
from . import data
from . import utils  # torch.utils.data's import path: distrain.utils.data is distrain.data's objects
from . import distributed
from . import multiprocessing  # torch.multiprocessing.spawn(...) after `import torch`
from .engine.autograd import (enable_grad, is_anomaly_check_nan_enabled, is_anomaly_enabled, is_grad_enabled, no_grad,
                              set_grad_enabled)
from .engine.backend import Device as device
from .engine.legacy_types import legacy_types as _legacy_types
from .engine.dtypes import (bool_, double, float16, float32, float64, get_default_dtype, half, int8, int16, int32,
                            int64, long, set_default_dtype, short, uint8)
from .engine.factories import (arange, as_tensor, empty, empty_like, eye, from_numpy, full, full_like, linspace, ones,
                               ones_like, rand, rand_like, randint, randint_like, randn, randn_like, randperm, tensor,
                               zeros, zeros_like)
from .engine.ops import (abs, add, all, amax, amin, any, argmax, argmin, bmm, cat, chunk, clamp, clone, cos, div, dot,
                         eq, erf, exp, expm1, flatten, flip, floor_divide, gather, ge, gt, index_select, isfinite, isinf, isnan, le, log, log1p, log_softmax, logsumexp, lt,
                         matmul, max, maximum, mean, min, minimum, mm, mul, narrow, ne, neg, permute, pow, prod, relu,
                         remainder, reshape, sigmoid, sign, sin, softmax, split, sqrt, squeeze, stack, std, sub, sum, t, tanh,
                         transpose, unbind, unsqueeze, var, where)
from .engine.ops import (addmm, allclose, argsort, argwhere, baddbmm, cumprod, cumsum, diag, diagonal, einsum, equal,
                         index_add, index_copy, index_fill, isclose, kthvalue, lerp, masked_fill, meshgrid, msort,
                         nan_to_num, nonzero, norm, outer, repeat_interleave, roll, scatter, scatter_add, sort,
                         tensor_split, topk, tril, triu, unique, unique_consecutive)
from .engine.ops import (acos, acosh, addcdiv, addcmul, asin, asinh, atan, atan2, atanh, bincount, broadcast_tensors,
                         broadcast_to, bucketize, cdist, ceil, clamp_max, clamp_min, column_stack, cosh, count_nonzero,
                         cross, diff, dstack, exp2, floor, frac, histc, hstack, inner, kron, log2, log10, masked_select,
                         median, movedim, moveaxis, mv, nanmean, nanmedian, nansum, reciprocal, round, row_stack, rsqrt,
                         searchsorted, select, sinh, std_mean, swapaxes, take, take_along_dim, tan, tensordot, trace,
                         tril_indices, triu_indices, trunc, unflatten, var_mean, vdot, vstack)
from .engine.ops import (bernoulli, cummax, cummin, deg2rad, dist, hypot, index_put, logaddexp, logcumsumexp, logical_and,
                         logical_or, logical_xor, logit, masked_scatter, multinomial, normal, rad2deg, rot90,
                         scatter_reduce, xlogy)
from .engine.ops import logical_not, numel, square
from . import linalg
from .engine.threads import get_num_threads, set_num_threads
from .engine.random import Generator, get_rng_state, initial_seed, manual_seed, seed, set_rng_state
from . import accelerator, backends  # torch.accelerator, torch.backends (cudnn, cuda, mps)
from .engine.autograd.inference_mode import inference_mode, is_inference_mode_enabled
from .engine.default_device import get_default_device, set_default_device
from .engine.determinism import (are_deterministic_algorithms_enabled, get_deterministic_debug_mode,
                                 is_deterministic_algorithms_warn_only_enabled, set_deterministic_debug_mode,
                                 use_deterministic_algorithms)
from .engine.dtypes import DType as dtype
from .checkpoint import load, save
from .errors import (ArgumentError, AutogradError, CheckpointError, CheckpointWriteError, DeviceError, DistrainError,
                     DTypeError, IndexingError, OptimizerError, OutOfMemoryError, ShapeError, ShardError, StateDictError)

globals().update(_legacy_types("cpu"))  # distrain.FloatTensor, LongTensor, ... (old PyTorch spellings)
bool = bool_  # distrain.bool, like torch.bool (shadows the builtin only inside this module's namespace)
float = float32
int = int32
clip = clamp
ger = outer
absolute, arccos, arcsin, arctan, arctan2, fix, negative = abs, acos, asin, atan, atan2, trunc, neg
sgn, true_divide, multiply, divide, subtract = sign, div, mul, div, sub

# `import distrain.autograd` / `import distrain.nn.functional as F` find the engine's modules.
_sys.modules[__name__ + ".autograd"] = autograd
_sys.modules[__name__ + ".nn"] = nn
_sys.modules[__name__ + ".nn.functional"] = nn.functional
_sys.modules[__name__ + ".nn.init"] = nn.init
_sys.modules[__name__ + ".nn.utils"] = nn.utils
_sys.modules[__name__ + ".nn.utils.rnn"] = nn.utils.rnn
_sys.modules[__name__ + ".optim"] = optim
from . import parallel as _parallel  # noqa: E402  (torch.nn.parallel.DistributedDataParallel's import path)

nn.parallel = _parallel
_sys.modules[__name__ + ".nn.parallel"] = _parallel
_sys.modules[__name__ + ".optim.lr_scheduler"] = optim.lr_scheduler

__version__ = "0.1.0"
