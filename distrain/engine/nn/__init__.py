"""distrain.nn: building blocks for models, with PyTorch's names.

- `Module`, `Parameter`, containers (`Sequential`, `ModuleList`, `ModuleDict`)
- layers: Linear, Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, BatchNorm1d/2d, LayerNorm,
  Dropout, Embedding, Flatten, Identity, and the activations
- losses: MSELoss, L1Loss, CrossEntropyLoss, NLLLoss, BCEWithLogitsLoss, BCELoss
- `nn.functional` (stateless forms), `nn.init` (initialisers), `nn.utils` (clipping, packing)
"""
from . import functional, init
from . import parameter_tools as utils
from . import packed_sequence
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

utils.rnn = packed_sequence  # torch.nn.utils.rnn
from .activation import GELU, Dropout, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .containers import ModuleDict, ModuleList, Sequential
from .conv import Conv2d
from .linear import Flatten, Identity, Linear
from .loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from .module import Module
from .normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from .parameter import Parameter
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from .sparse import Embedding
from .attention import MultiheadAttention
from .transformer import TransformerEncoder, TransformerEncoderLayer

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNCell"]
__all__ += ["AdaptiveAvgPool2d", "AvgPool2d", "BCELoss", "BCEWithLogitsLoss", "BatchNorm1d", "BatchNorm2d", "Conv2d",
           "CrossEntropyLoss", "Dropout", "Embedding", "Flatten", "GELU", "Identity", "L1Loss", "LayerNorm",
           "LeakyReLU", "Linear", "LogSoftmax", "MSELoss", "MaxPool2d", "Module", "ModuleDict", "ModuleList",
           "NLLLoss", "Parameter", "ReLU", "Sequential", "Sigmoid", "Softmax", "Tanh", "functional", "init", "utils"]
__all__ += ["MultiheadAttention", "TransformerEncoder", "TransformerEncoderLayer"]
