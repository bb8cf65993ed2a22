"""torch.backends.mps's questions: distrain has no Apple Metal backend, so both answers are False.

Programs choose their device with `"mps" if torch.backends.mps.is_available() else ...`;
here that choice falls through to CUDA or the cpu device.
"""


def is_available() -> bool:
    """False: distrain computes on NumPy (cpu) and CuPy (cuda), never on Metal."""
    return False


def is_built() -> bool:
    """False: no build of distrain includes Metal support."""
    return False
