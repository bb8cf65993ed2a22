"""The configured model on the configured device."""
from __future__ import annotations

from .. import models
from .config import ConfigError


def training_device(name) -> str:
    """"cuda" is the GPU the launcher made current for this rank (its local rank's); "auto" picks it if there is one."""
    from ..engine.backend import cuda_is_available

    if name == "auto":
        return "cuda" if cuda_is_available() else "cpu"
    if name == "cuda" and not cuda_is_available():
        raise ConfigError("device = \"cuda\": no GPU is usable here (CuPy with a CUDA device: "
                          "pip install 'distrain[gpu]'); use device = \"cpu\" or \"auto\"")
    return name


def create_model(config, input_shape, classes):
    """The configured model, told the data's input shape and class count when its builder takes them."""
    from ..errors import ModelError

    name = config["model"]
    try:
        accepts = models.arguments_of(name)
        given = {key: value for key, value in (("input_shape", tuple(input_shape)), ("num_classes", classes))
                 if key in accepts}
        return models.create(name, **{**given, **config["model_args"]})
    except ModelError as error:
        where = "model_args" if name in models.names() else "model"
        raise ConfigError(f"{where}: {error}") from None
