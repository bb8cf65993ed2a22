"""distrain.optim: optimizers and learning-rate schedulers, with torch.optim's names and numbers.

| optimizer | when to use it |
| --- | --- |
| SGD(lr, momentum=0.9) | convolutional nets, well-tuned schedules |
| Adam / AdamW | transformers and most other models; AdamW decays weights properly |
| Adagrad | sparse features (embeddings) |
| RMSprop | recurrent nets, reinforcement learning |

Every optimizer updates `nn.Parameter`s packed in flat buffers a whole buffer at a time
(one code path: NOTE [ Optimizer chunks ] in chunks.py); create it after moving the
model to its device and dtype.

Example::

    >>> model = distrain.nn.Linear(10, 1)
    >>> optimizer = distrain.optim.AdamW(model.parameters(), lr=1e-3)
    >>> scheduler = distrain.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=100)
"""
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .input_checks import OptimizerError, OptimizerTypeError
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "OptimizerError", "OptimizerTypeError", "RMSprop",
           "lr_scheduler"]
