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
from .conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
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
from .channel_dropout import Dropout1d, Dropout2d, Dropout3d
from .distance_loss import CosineEmbeddingLoss, HuberLoss, KLDivLoss, SmoothL1Loss
from .group_normalization import GroupNorm, InstanceNorm1d, InstanceNorm2d
from .pointwise_activation import (CELU, ELU, GLU, SELU, Hardshrink, Hardsigmoid, Hardswish, Hardtanh, LogSigmoid,
                                   Mish, PReLU, ReLU6, SiLU, Softmin, Softplus, Softshrink, Softsign, Tanhshrink,
                                   Threshold)
from .upsampling import PixelShuffle, PixelUnshuffle, Upsample, UpsamplingBilinear2d, UpsamplingNearest2d

__all__ += ["CELU", "Conv1d", "ConvTranspose1d", "ConvTranspose2d", "CosineEmbeddingLoss", "Dropout1d", "Dropout2d",
            "Dropout3d", "ELU", "GLU", "GroupNorm", "Hardshrink", "Hardsigmoid", "Hardswish", "Hardtanh", "HuberLoss",
            "InstanceNorm1d", "InstanceNorm2d", "KLDivLoss", "LogSigmoid", "Mish", "PReLU", "PixelShuffle",
            "PixelUnshuffle", "ReLU6", "SELU", "SiLU", "SmoothL1Loss", "Softmin", "Softplus", "Softshrink",
            "Softsign", "Tanhshrink", "Threshold", "Upsample", "UpsamplingBilinear2d", "UpsamplingNearest2d"]
