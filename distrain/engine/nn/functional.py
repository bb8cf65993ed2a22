"""distrain.nn.functional: the stateless forms of layers, activations and losses (torch.nn.functional)."""
from ..ops.conv import conv2d, unfold
from ..ops.dropout import dropout, embedding
from ..ops.elementwise import gelu, leaky_relu, relu, sigmoid, tanh
from ..ops.indexing import one_hot
from ..ops.linalg import linear
from ..ops.losses import binary_cross_entropy, binary_cross_entropy_with_logits, l1_loss, mse_loss, nll_loss
from ..ops.normalization import batch_norm, layer_norm
from ..ops.shape import pad
from ..ops.pooling import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from ..ops.softmax import cross_entropy, log_softmax, softmax
from ..ops.attention import scaled_dot_product_attention

__all__ = ["adaptive_avg_pool2d", "avg_pool2d", "batch_norm", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "conv2d", "cross_entropy", "dropout", "embedding", "gelu",
           "l1_loss", "layer_norm", "leaky_relu", "linear", "log_softmax", "max_pool2d", "mse_loss", "nll_loss",
           "one_hot", "pad", "relu", "sigmoid", "softmax", "tanh", "unfold"]
__all__ += ["scaled_dot_product_attention"]
