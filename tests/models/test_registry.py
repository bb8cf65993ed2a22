"""distrain.models' registry: names, create, register, and the errors a config's typo gets.

Every refusal is a ModelError (a DistrainError and a ValueError) whose one-line message
names the model and the argument (or the unknown name) and lists what is accepted.
"""
import pytest

import distrain
import distrain.models
from distrain.errors import DistrainError, ModelError
from distrain.models import registry

BUILT_IN = ["cnn", "mlp", "resnet18", "resnet34"]


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry for tests that register models, so none leaks into other tests."""
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))


def test_the_built_in_models_are_registered():
    assert distrain.models.names() == BUILT_IN
    created = {name: distrain.models.create(name, **({"in_features": 4} if name == "mlp" else {}))
               for name in BUILT_IN}
    assert all(isinstance(model, distrain.nn.Module) for model in created.values())


def test_an_unknown_name_is_refused_with_the_accepted_names():
    with pytest.raises(ModelError) as caught:
        distrain.models.create("resnet50")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, DistrainError)
    message = str(caught.value)
    assert "'resnet50'" in message and all(name in message for name in BUILT_IN)
    assert "\n" not in message


@pytest.mark.parametrize("name, kwargs, named", [
    ("cnn", {"widht": 16}, ["'cnn'", "'widht'", "width", "num_classes", "in_channels", "input_shape"]),
    ("resnet18", {"pretrained": True}, ["'resnet18'", "'pretrained'", "stem", "zero_init_residual"]),
    ("mlp", {"in_features": 4, "hiden": (8,)}, ["'mlp'", "'hiden'", "hidden", "dropout"]),
])
def test_an_unknown_argument_is_refused_with_the_accepted_ones(name, kwargs, named):
    with pytest.raises(ModelError) as caught:
        distrain.models.create(name, **kwargs)
    assert all(part in str(caught.value) for part in named), str(caught.value)


@pytest.mark.parametrize("name, kwargs, argument", [
    ("cnn", {"num_classes": 0}, "num_classes"),
    ("cnn", {"num_classes": "10"}, "num_classes"),
    ("cnn", {"width": True}, "width"),
    ("cnn", {"width": 2.5}, "width"),
    ("cnn", {"input_size": -8}, "input_size"),
    ("cnn", {"input_shape": (8, 8)}, "input_shape"),
    ("cnn", {"input_shape": (1, 0, 8)}, "input_shape[1]"),
    ("cnn", {"in_channels": 3, "input_shape": (1, 8, 8)}, "in_channels"),
    ("cnn", {"input_size": 32, "input_shape": (1, 8, 8)}, "input_size"),
    ("mlp", {}, "in_features"),
    ("mlp", {"in_features": 4, "input_shape": (4,)}, "in_features"),
    ("mlp", {"in_features": 0}, "in_features"),
    ("mlp", {"in_features": 4, "hidden": (64, 0)}, "hidden[1]"),
    ("mlp", {"in_features": 4, "hidden": "256"}, "hidden"),
    ("mlp", {"in_features": 4, "hidden": 256}, "hidden"),
    ("mlp", {"in_features": 4, "dropout": 1.0}, "dropout"),
    ("mlp", {"in_features": 4, "dropout": -0.1}, "dropout"),
    ("mlp", {"in_features": 4, "num_classes": 0}, "num_classes"),
    ("resnet18", {"num_classes": 0}, "num_classes"),
    ("resnet18", {"stem": "imagenett"}, "stem"),
    ("resnet34", {"zero_init_residual": "false"}, "zero_init_residual"),
    ("resnet34", {"in_channels": 0}, "in_channels"),
    ("resnet18", {"in_channels": 1, "input_shape": (3, 32, 32)}, "in_channels"),
])
def test_a_bad_value_is_refused_naming_the_model_and_the_argument(name, kwargs, argument):
    with pytest.raises(ModelError) as caught:
        distrain.models.create(name, **kwargs)
    message = str(caught.value)
    assert f"model {name!r}" in message and argument in message and "\n" not in message, message


def test_the_refusal_says_what_is_accepted():
    with pytest.raises(ModelError, match=r"stem must be one of 'imagenet', 'cifar', got 'imagenett'"):
        distrain.models.create("resnet18", stem="imagenett")
    with pytest.raises(ModelError, match=r"num_classes must be an integer >= 1, got 0"):
        distrain.models.create("cnn", num_classes=0)


def test_arguments_of_names_what_each_model_takes(scratch_registry):
    assert distrain.models.arguments_of("cnn") == ("in_channels", "num_classes", "width", "input_size", "input_shape")
    for name in BUILT_IN:  # what a trainer knows about its data, every built-in model takes
        assert {"input_shape", "num_classes"} <= set(distrain.models.arguments_of(name)), name
    distrain.models.register("fixed")(lambda num_classes, *, depth=2, **extra: distrain.nn.Identity())
    assert distrain.models.arguments_of("fixed") == ("num_classes", "depth")
    with pytest.raises(ModelError, match=r"unknown model 'nope'; registered models: cnn, fixed, mlp"):
        distrain.models.arguments_of("nope")


def test_register_adds_a_model_that_create_builds(scratch_registry):
    def tiny(in_features, num_classes=10):
        return distrain.nn.Linear(in_features, num_classes)

    assert distrain.models.register("tiny")(tiny) is tiny  # the decorator hands the builder back unchanged
    assert "tiny" in distrain.models.names()
    model = distrain.models.create("tiny", in_features=6, num_classes=3)
    assert isinstance(model, distrain.nn.Linear) and model.weight.shape == (3, 6)
    with pytest.raises(ModelError, match=r"model 'tiny' needs the argument 'in_features'"):
        distrain.models.create("tiny")
    with pytest.raises(ModelError, match=r"model 'tiny' has no argument 'width'; it accepts: in_features, num_classes"):
        distrain.models.create("tiny", in_features=6, width=3)


def test_register_takes_a_module_class(scratch_registry):
    @distrain.models.register("doubler")
    class Doubler(distrain.nn.Module):
        def __init__(self, factor=2.0):
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return x * self.factor

    assert distrain.models.create("doubler", factor=3.0)(distrain.ones(2)).tolist() == [3.0, 3.0]


def test_a_builder_taking_any_keywords_checks_its_own(scratch_registry):
    distrain.models.register("open")(lambda **kwargs: distrain.nn.Identity(**kwargs))
    assert isinstance(distrain.models.create("open", anything=1), distrain.nn.Identity)


def test_register_refuses_a_taken_name_a_bad_name_and_a_builder_that_is_not_a_model(scratch_registry):
    with pytest.raises(ModelError, match=r"'cnn' is already taken by distrain\.models\.cnn\.SmallCNN"):
        distrain.models.register("cnn")(lambda: distrain.nn.Identity())
    assert distrain.models.create("cnn").__class__.__name__ == "SmallCNN"  # the built-in one is still there
    with pytest.raises(ModelError, match=r"non-empty string"):
        distrain.models.register("")
    with pytest.raises(ModelError, match=r"not callable"):
        distrain.models.register("thing")(42)
    distrain.models.register("not_a_model")(lambda: "a string")
    with pytest.raises(ModelError, match=r"model 'not_a_model'.*returned a str, not a distrain\.nn\.Module"):
        distrain.models.create("not_a_model")


@pytest.mark.parametrize("module", ["distrain.models", "distrain.models.registry", "distrain.models.mlp",
                                    "distrain.models.cnn", "distrain.models.resnet"])
def test_the_docstring_examples_run(module, scratch_registry):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), extraglobs={"distrain": distrain})
    assert result.failed == 0 and result.attempted > 0
