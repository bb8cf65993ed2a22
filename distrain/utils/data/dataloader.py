"""torch.utils.data.dataloader's names: `distrain.data`'s DataLoader, collate and worker info."""
from ...data.collate import default_collate
from ...data.loader import DataLoader
from ...data.worker import get_worker_info

__all__ = ["DataLoader", "default_collate", "get_worker_info"]
