"""torch.distributed.algorithms.ddp_comm_hooks' import path: `default_hooks` (distrain/comm_hooks.py has the mechanism)."""
from . import default_hooks  # noqa: F401
