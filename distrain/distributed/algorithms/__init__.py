"""torch.distributed.algorithms' import path; distrain has the DDP communication hooks (ddp_comm_hooks)."""
