"""distrain.nn.functional: the functional forms of activations and losses, as in torch.nn.functional."""
from ..ops.elementwise import gelu, leaky_relu, relu, sigmoid, tanh
from ..ops.indexing import one_hot
from ..ops.softmax import cross_entropy, log_softmax, softmax

__all__ = ["cross_entropy", "gelu", "leaky_relu", "log_softmax", "one_hot", "relu", "sigmoid", "softmax", "tanh"]
