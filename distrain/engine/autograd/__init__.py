"""distrain.autograd: reverse-mode automatic differentiation.

- `graph.py`     the recorded graph (Node, edges, saved tensors, version checks)
- `engine.py`    the backward walk (dependency order, leaf accumulation, hooks)
- `grad_mode.py` no_grad / enable_grad / set_grad_enabled
- `function.py`  user-defined ops (`Function` with ctx.save_for_backward)
- `api.py`       `backward` and `grad`
- `gradcheck.py` finite-difference checking
- `anomaly_mode.py` detect_anomaly: the first backward op producing NaN/inf, with its forward stack
"""
from .anomaly_mode import detect_anomaly, is_anomaly_check_nan_enabled, is_anomaly_enabled, set_detect_anomaly
from .api import backward, grad
from .function import Function, FunctionCtx
from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .inference_mode import inference_mode
from .gradcheck import gradcheck


def Variable(tensor, requires_grad=False, volatile=False):
    """The pre-0.4 PyTorch wrapper, kept so lecture code runs.

    Returns a leaf sharing `tensor`'s storage, requiring grad if asked; `tensor` itself is
    left as it was (as `torch.autograd.Variable` does today).
    """
    leaf = tensor.detach()
    if requires_grad:
        leaf.requires_grad_(True)
    return leaf


__all__ = ["Function", "FunctionCtx", "Variable", "backward", "detect_anomaly", "enable_grad", "grad", "gradcheck",
           "is_anomaly_check_nan_enabled", "is_anomaly_enabled", "is_grad_enabled", "no_grad", "set_detect_anomaly",
           "set_grad_enabled", "inference_mode"]
