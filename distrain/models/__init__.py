"""distrain.models: build a model from its name, so a config file can say `model = "resnet18"`.

The registry maps a name to a builder (a Module class or a function returning a Module).
`create(name, **kwargs)` checks the keyword arguments against the builder's signature and
the values against what the model accepts, then builds it; every refusal is a
`distrain.errors.ModelError` (a ValueError) naming the model and the argument, and an
unknown name lists the registered ones. `names()` lists them; `register(name)` adds your
own (it is how the built-in models are added too, so yours are first-class);
`arguments_of(name)` says which keyword arguments a model takes.

=============  ============================================================  ================================
name           what it is                                                    use it for
=============  ============================================================  ================================
``mlp``        Flatten, Linear-ReLU-Dropout per hidden width, Linear head    tabular data, a first baseline
``cnn``        Conv-BN-ReLU blocks (depth from the image size), global       small images: 8x8 digits, MNIST,
               average pooling, Linear head                                  CIFAR (the trainer's default)
``resnet18``   torchvision's ResNet-18 (BasicBlock, [2, 2, 2, 2]) with its   CIFAR (stem="cifar") or ImageNet-
``resnet34``   parameter names; ResNet-34 is [3, 4, 6, 3]                    sized images; torchvision weights
=============  ============================================================  ================================

Every image model takes `input_shape=(C, H, W)` as well as `in_channels`, and every model
takes `num_classes`, so a trainer can describe its dataset the same way to any of them.
The ResNets' state_dict keys and shapes are torchvision's (``conv1.weight``,
``layer1.0.bn1.running_mean``, ``layer2.0.downsample.0.weight``, ``fc.bias``, ...), so a
torchvision state_dict, its tensors turned into arrays (``{k: v.numpy() for k, v in
sd.items()}`` where torch is at hand), loads with `load_state_dict`, strict.

Example::

    >>> import distrain.models
    >>> distrain.models.names()
    ['cnn', 'mlp', 'resnet18', 'resnet34']
    >>> model = distrain.models.create("resnet18", num_classes=10, stem="cifar")
    >>> @distrain.models.register("logistic")
    ... def logistic(in_features, num_classes=10):
    ...     return distrain.nn.Linear(in_features, num_classes)
    >>> distrain.models.create("logistic", in_features=64)
    Linear(in_features=64, out_features=10, bias=True)
"""
from .registry import arguments_of, create, names, register
from . import cnn, mlp, resnet  # noqa: F401  (importing them registers them)

__all__ = ["arguments_of", "create", "names", "register"]
