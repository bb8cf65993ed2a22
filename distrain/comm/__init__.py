"""distrain.comm: communicators between training processes (see base.py for which to use when)."""
from .base import (
    REDUCE_OPS,
    Communicator,
    CommunicatorError,
    Handle,
    create_communicator,
)
from .local import LocalCommunicator

__all__ = ["REDUCE_OPS", "Communicator", "CommunicatorError", "Handle", "LocalCommunicator", "create_communicator"]
