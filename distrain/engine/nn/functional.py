"""distrain.nn.functional: the stateless forms of layers, activations and losses (torch.nn.functional)."""
from ..ops.conv import conv2d, unfold
from ..ops.dropout import dropout, embedding
from ..ops.elementwise import gelu, relu, sigmoid, tanh
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
from ..ops.activations import (celu, elu, glu, hardshrink, hardsigmoid, hardswish, hardtanh, leaky_relu, logsigmoid,
                               mish, prelu, relu6, selu, silu, softmin, softplus, softshrink, softsign, tanhshrink,
                               threshold)
from ..ops.channel_dropout import dropout1d, dropout2d, dropout3d
from ..ops.conv_variants import conv1d, conv_transpose1d, conv_transpose2d
from ..ops.distance_losses import cosine_embedding_loss, huber_loss, kl_div, smooth_l1_loss
from ..ops.instance_norms import group_norm, instance_norm
from ..ops.interpolate import interpolate, upsample
from ..ops.pixel_shuffle import pixel_shuffle, pixel_unshuffle

__all__ += ["celu", "conv1d", "conv_transpose1d", "conv_transpose2d", "cosine_embedding_loss", "dropout1d",
            "dropout2d", "dropout3d", "elu", "glu", "group_norm", "hardshrink", "hardsigmoid", "hardswish", "hardtanh",
            "huber_loss", "instance_norm", "interpolate", "kl_div", "logsigmoid", "mish", "pixel_shuffle",
            "pixel_unshuffle", "prelu", "relu6", "selu", "silu", "smooth_l1_loss", "softmin", "softplus",
            "softshrink", "softsign", "tanhshrink", "threshold", "upsample"]
