"""distrain.nn: neural-network building blocks. For now, the functional forms (`nn.functional`)."""
from . import functional

__all__ = ["functional"]
