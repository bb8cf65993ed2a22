"""PyTorch's default DDP communication hooks, for DistributedDataParallel.register_comm_hook(state, hook).

    from distrain.distributed.algorithms.ddp_comm_hooks import default_hooks
    model.register_comm_hook(None, default_hooks.fp16_compress_hook)

Registered, each is the reducer's own reduction (distrain/comm_hooks.py); called by a hook
of your own on a GradBucket, each reduces that bucket and returns a Future of it.
"""
from ....comm_hooks import allreduce_hook, bf16_compress_hook, fp16_compress_hook

__all__ = ["allreduce_hook", "bf16_compress_hook", "fp16_compress_hook"]
