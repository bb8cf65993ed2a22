"""The data and starting weights both MNIST-style programs share (NumPy only, so both import it unchanged).

Images are 1x16x16 (small, for a 2-core machine) from a fixed generator, labels a function
of them; the starting weights are drawn here so that distrain and PyTorch start alike.
"""
import numpy

TRAIN, TEST, BATCH, EPOCHS = 240, 60, 10, 2
_generator = numpy.random.default_rng(2026)
images = _generator.standard_normal((TRAIN + TEST, 1, 16, 16)).astype(numpy.float32)
labels = (images[:, 0, :8].sum(axis=(1, 2)) > 0).astype(numpy.int64) * 5 + \
    (images[:, 0, 8:, :4].sum(axis=(1, 2)) > 0).astype(numpy.int64)
SHAPES = {"conv1.weight": (6, 1, 5, 5), "conv1.bias": (6,), "conv2.weight": (12, 6, 3, 3), "conv2.bias": (12,),
          "fc1.weight": (32, 48), "fc1.bias": (32,), "fc2.weight": (10, 32), "fc2.bias": (10,)}
initial = {name: (_generator.standard_normal(shape) * 0.2).astype(numpy.float32) for name, shape in SHAPES.items()}
# what rank 0 'resumed' from: one step of its own on this batch, at this lr, before training
RESUME_BATCH = slice(TRAIN, TRAIN + BATCH)
RESUME_LR = 0.02
