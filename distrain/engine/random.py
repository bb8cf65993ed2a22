"""Random number generation: one seeded generator per device, and `manual_seed`.

`distrain.manual_seed(s)` reseeds the CPU generator and every CUDA generator, so every
random factory (randn, rand, randint, ...) and, later, dropout and data shuffling give
the same numbers for the same seed. CPU numbers come from NumPy's PCG64; CUDA numbers
from CuPy's generator on that device.
"""
from __future__ import annotations

import numpy

from ..errors import ArgumentError
from . import backend
from .capture_state import active as _capturing


class Generator:
    """A seedable source of random numbers on one device (like `torch.Generator`)."""

    def __init__(self, device="cpu", seed=None):
        self.device = backend.Device(device)
        self.manual_seed(numpy.random.SeedSequence().entropy % (2**63) if seed is None else seed)

    def manual_seed(self, seed):
        self._seed = _unsigned_seed(seed)
        if self.device is backend.CPU:
            self._engine = numpy.random.Generator(numpy.random.PCG64(self._seed))
        else:
            cupy = backend.cupy_module()
            with cupy.cuda.Device(self.device.index):
                self._engine = cupy.random.RandomState(self._seed)
        return self

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self):
        """A picklable snapshot (CPU generators only; a CUDA generator is restored by reseeding)."""
        if self.device is backend.CPU:
            return {"device": "cpu", "seed": self._seed, "state": self._engine.bit_generator.state}
        return {"device": str(self.device), "seed": self._seed}

    def set_state(self, state):
        self.manual_seed(state["seed"])
        if self.device is backend.CPU and "state" in state:
            self._engine.bit_generator.state = state["state"]

    # the draws each factory needs, written once for both devices; while distrain.jit captures,
    # a draw is recorded in the graph, so that every replay draws anew from this generator
    def normal(self, shape, dtype):
        recorder = _capturing()
        return self._draw_normal(shape, dtype) if recorder is None else recorder.draw(self, "normal", (shape, dtype))

    def uniform(self, shape, dtype):
        recorder = _capturing()
        return self._draw_uniform(shape, dtype) if recorder is None else recorder.draw(self, "uniform", (shape, dtype))

    def integers(self, low, high, shape, dtype):
        recorder = _capturing()
        return self._draw_integers(low, high, shape, dtype) if recorder is None else \
            recorder.draw(self, "integers", (low, high, shape, dtype))

    def permutation(self, n):
        recorder = _capturing()
        return self._draw_permutation(n) if recorder is None else recorder.draw(self, "permutation", (n,))

    def _draw_normal(self, shape, dtype):
        if self.device is backend.CPU:
            return self._engine.standard_normal(shape, dtype=numpy.float32 if dtype == numpy.float16 else dtype).astype(dtype, copy=False)
        return self._engine.standard_normal(shape, dtype=dtype)

    def _draw_uniform(self, shape, dtype):
        if self.device is backend.CPU:
            return self._engine.random(shape, dtype=numpy.float32 if dtype == numpy.float16 else dtype).astype(dtype, copy=False)
        return self._engine.random_sample(shape, dtype=dtype)

    def _draw_integers(self, low, high, shape, dtype):
        if self.device is backend.CPU:
            return self._engine.integers(low, high, size=shape, dtype=dtype)
        return self._engine.randint(low, high, size=shape, dtype=dtype)

    def _draw_permutation(self, n):
        return self._engine.permutation(n)


def _unsigned_seed(seed) -> int:
    """PyTorch's seed range, [-2**63, 2**64): a negative seed s means s + 2**64 (manual_seed(-1) works)."""
    value = int(seed)
    if not -2 ** 63 <= value < 2 ** 64:
        raise ArgumentError(f"manual_seed: seed {value} is out of range; a seed is an integer in [-2**63, 2**64)")
    return value + 2 ** 64 if value < 0 else value


_default_generators: dict = {}
_cuda_seed = None  # from cuda.manual_seed_all: the seed of CUDA generators made later (else the CPU one's)


def default_generator(device=backend.CPU) -> Generator:
    device = backend.Device(device)
    generator = _default_generators.get(device)
    if generator is None:
        seed = _default_generators[backend.CPU].initial_seed() if backend.CPU in _default_generators else None
        if device is not backend.CPU and _cuda_seed is not None:
            seed = _cuda_seed
        generator = _default_generators[device] = Generator(device, seed)
    return generator


def manual_seed(seed) -> Generator:
    """Seed every device's default generator (and those made later); returns the CPU one."""
    global _cuda_seed
    _cuda_seed = None  # CUDA generators made later take the CPU generator's seed
    for generator in _default_generators.values():
        generator.manual_seed(seed)
    if backend.CPU not in _default_generators:
        _default_generators[backend.CPU] = Generator(backend.CPU, seed)
    return _default_generators[backend.CPU]


def manual_seed_cuda(seed) -> None:
    """Seed every CUDA generator, made or made later (`distrain.cuda.manual_seed`/`manual_seed_all`).

    PyTorch's `cuda.manual_seed` seeds only the current GPU; distrain seeds every GPU alike,
    which is the same for the usual one-GPU-per-process program.
    """
    global _cuda_seed
    _cuda_seed = _unsigned_seed(seed)
    for device, generator in _default_generators.items():
        if device is not backend.CPU:
            generator.manual_seed(_cuda_seed)


def seed() -> int:
    """Seed every generator from OS entropy; returns the seed used."""
    new_seed = int(numpy.random.SeedSequence().entropy % (2**63))
    manual_seed(new_seed)
    return new_seed


def initial_seed() -> int:
    return default_generator().initial_seed()


def get_rng_state():
    return default_generator().get_state()


def set_rng_state(state):
    default_generator().set_state(state)
