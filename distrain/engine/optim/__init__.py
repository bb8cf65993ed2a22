"""distrain.optim: optimizers and learning-rate schedulers, with torch.optim's names and numbers.

| optimizer | when to use it |
| --- | --- |
| SGD(lr, momentum=0.9) | convolutional nets, well-tuned schedules |
| Adam / AdamW | transformers and most other models; AdamW decays weights properly |
| Adagrad | sparse features (embeddings) |
| RMSprop | recurrent nets, reinforcement learning |
| Adadelta | no learning rate to tune (lr=1 scales the paper's rule) |
| Adamax / NAdam / RAdam | Adam variants: infinity norm / Nesterov momentum / no warm-up needed |
| LBFGS | small full-batch problems, deterministic losses (needs a closure) |

Every optimizer updates `nn.Parameter`s packed in flat buffers a whole buffer at a time
(one code path: NOTE [ Optimizer chunks ] in chunks.py); create it after moving the
model to its device and dtype.

Example::

    >>> model = distrain.nn.Linear(10, 1)
    >>> optimizer = distrain.optim.AdamW(model.parameters(), lr=1e-3)
    >>> scheduler = distrain.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=100)
"""
from . import lr_scheduler
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .adamax import Adamax
from .input_checks import OptimizerError, OptimizerTypeError
from .lbfgs import LBFGS
from .nadam import NAdam
from .optimizer import Optimizer
from .radam import RAdam
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["LBFGS", "SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "NAdam", "Optimizer", "OptimizerError",
           "OptimizerTypeError", "RAdam", "RMSprop", "lr_scheduler"]
