"""dtype objects as PyTorch shows them (`distrain.float32`), still NumPy dtypes underneath; default dtype; x.type()."""
import copy
import pickle

import numpy as np
import pytest
import torch

import distrain

NAMES = ["float16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64", "bool",
         "half", "float", "double", "short", "int", "long"]


@pytest.mark.parametrize("name", NAMES)
def test_dtypes_print_as_pytorchs_with_distrains_name(name):
    ours, theirs = getattr(distrain, name), getattr(torch, name)
    assert repr(ours) == repr(theirs).replace("torch.", "distrain.")
    assert str(ours) == str(theirs).replace("torch.", "distrain.")
    assert f"{ours}" == f"{theirs}".replace("torch.", "distrain.")


@pytest.mark.parametrize("name", NAMES)
def test_dtype_properties_are_pytorchs(name):
    ours, theirs = getattr(distrain, name), getattr(torch, name)
    assert (ours.is_floating_point, ours.is_complex, ours.is_signed, ours.itemsize) == \
        (theirs.is_floating_point, theirs.is_complex, theirs.is_signed, theirs.itemsize)


@pytest.mark.parametrize("make", [lambda lib: lib.zeros(2), lambda lib: lib.tensor([1, 2]),
                                  lambda lib: lib.ones(2, dtype=lib.float64), lambda lib: lib.tensor([True]),
                                  lambda lib: lib.arange(3).to(lib.int32), lambda lib: lib.zeros(2).half()])
def test_a_tensors_dtype_prints_as_pytorchs(make):
    assert repr(make(distrain).dtype) == repr(make(torch).dtype).replace("torch.", "distrain.")


def test_a_tensors_dtype_is_the_named_dtype():
    x = distrain.zeros(2, dtype=distrain.float64)
    assert x.dtype is distrain.float64 and x.dtype == distrain.double and x.dtype != distrain.float32
    assert isinstance(x.dtype, distrain.dtype) and type(distrain.int64) is distrain.dtype
    assert repr(distrain.dtype) == repr(torch.dtype).replace("torch.", "distrain.")


def test_dtypes_work_where_numpy_dtypes_do():
    x = distrain.zeros(3)
    assert np.zeros(2, dtype=x.dtype).dtype == np.float32
    assert np.ones(2).astype(distrain.int64).dtype == np.int64
    assert np.dtype(distrain.float16) == np.float16 and distrain.float16 == np.dtype("float16")
    assert x.dtype == np.float32 and x.dtype.kind == "f" and x.dtype.name == "float32"
    assert np.finfo(x.dtype).eps == np.finfo(np.float32).eps
    assert np.result_type(distrain.int64, np.float32) == np.float64


def test_dtypes_hash_as_their_numpy_dtype_so_either_finds_the_other():
    assert {np.dtype("float32"): "numpy"}[distrain.float32] == "numpy"
    assert {distrain.float32: "distrain"}[np.dtype("float32")] == "distrain"
    assert len({distrain.float32, distrain.float, distrain.zeros(1).dtype}) == 1


def test_dtypes_survive_pickle_and_copy_as_the_same_object():
    assert pickle.loads(pickle.dumps(distrain.int16)) is distrain.int16
    assert copy.deepcopy({"dtype": distrain.float64})["dtype"] is distrain.float64
    assert copy.copy(distrain.bool) is distrain.bool


@pytest.mark.parametrize("spelling", [distrain.float64, np.float64, np.dtype("float64"), "float64", "double"])
def test_factories_and_conversions_take_every_spelling_of_a_dtype(spelling):
    assert distrain.zeros(2, dtype=spelling).dtype is distrain.float64
    assert distrain.zeros(2).to(spelling).dtype is distrain.float64


# -- the default dtype, as set_default_dtype changes it in PyTorch ----------------------------
@pytest.fixture
def float64_by_default():
    distrain.set_default_dtype(distrain.float64)
    torch.set_default_dtype(torch.float64)
    yield
    distrain.set_default_dtype(distrain.float32)
    torch.set_default_dtype(torch.float32)


MADE_WITH_THE_DEFAULT = {
    "tensor of floats": lambda lib: lib.tensor([1.0, 2.0]),
    "0-d tensor": lambda lib: lib.tensor(2.5),
    "Tensor()": lambda lib: lib.Tensor([1, 2]),
    "zeros": lambda lib: lib.zeros(2),
    "ones": lambda lib: lib.ones(2, 2),
    "empty": lambda lib: lib.empty(3),
    "rand": lambda lib: lib.rand(2),
    "randn": lambda lib: lib.randn(2),
    "full of a float": lambda lib: lib.full((2,), 1.5),
    "full of an int": lambda lib: lib.full((2,), 3),
    "float arange": lambda lib: lib.arange(0, 1, 0.25),
    "int arange": lambda lib: lib.arange(4),
    "linspace": lambda lib: lib.linspace(0, 1, 5),
    "eye": lambda lib: lib.eye(2),
    "int times float": lambda lib: lib.arange(3) * 2.5,
    "int true division": lambda lib: lib.arange(3) / 2,
    "float32 times float": lambda lib: lib.ones(2, dtype=lib.float32) * 2.5,
    "int mean": lambda lib: lib.arange(4).float().mean(),
    "Linear weight": lambda lib: lib.nn.Linear(2, 3).weight,
    "Conv2d bias": lambda lib: lib.nn.Conv2d(1, 2, 3).bias,
    "BatchNorm running_mean": lambda lib: lib.nn.BatchNorm1d(4).running_mean,
    "Embedding weight": lambda lib: lib.nn.Embedding(5, 2).weight,
    "LayerNorm weight": lambda lib: lib.nn.LayerNorm(3).weight,
}


@pytest.mark.parametrize("what", MADE_WITH_THE_DEFAULT)
def test_factories_layers_and_promotion_follow_the_default_dtype_as_pytorch(float64_by_default, what):
    make = MADE_WITH_THE_DEFAULT[what]
    assert repr(distrain.get_default_dtype()) == "distrain.float64"
    assert repr(make(distrain).dtype) == repr(make(torch).dtype).replace("torch.", "distrain.")


@pytest.mark.parametrize("what", MADE_WITH_THE_DEFAULT)
def test_the_same_under_the_float32_default(what):
    make = MADE_WITH_THE_DEFAULT[what]
    assert repr(make(distrain).dtype) == repr(make(torch).dtype).replace("torch.", "distrain.")


def test_only_floating_dtypes_can_be_the_default():
    with pytest.raises(TypeError):
        torch.set_default_dtype(torch.int64)
    with pytest.raises(distrain.DTypeError, match="floating-point"):
        distrain.set_default_dtype(distrain.int64)
    assert distrain.get_default_dtype() is distrain.float32


# -- x.type(): the legacy type names ----------------------------------------------------------
@pytest.mark.parametrize("name", ["float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"])
def test_type_names_the_legacy_type_as_pytorch_with_distrains_prefix(name):
    ours, theirs = distrain.zeros(2, dtype=getattr(distrain, name)), torch.zeros(2, dtype=getattr(torch, name))
    assert ours.type() == theirs.type().replace("torch.", "distrain.")
    assert ours.type(ours.type()) is ours  # its own name converts to itself


@pytest.mark.parametrize("target", ["DoubleTensor", "LongTensor", "HalfTensor"])
def test_type_accepts_pytorchs_and_distrains_type_names(target):
    expected = torch.zeros(2).type(f"torch.{target}").dtype
    for prefix in ("torch.", "distrain."):
        converted = distrain.zeros(2).type(prefix + target)
        assert repr(converted.dtype) == repr(expected).replace("torch.", "distrain.")


def test_type_refuses_a_name_that_is_no_tensor_type():
    with pytest.raises(distrain.DTypeError, match="FloatTensor"):
        distrain.zeros(2).type("torch.Float")


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
@pytest.mark.parametrize("legacy", ["FloatTensor", "DoubleTensor", "LongTensor"])
def test_isinstance_against_a_legacy_type_answers_as_pytorch(dtype, legacy):
    ours = isinstance(distrain.zeros(2, dtype=getattr(distrain, dtype)), getattr(distrain, legacy))
    theirs = isinstance(torch.zeros(2, dtype=getattr(torch, dtype)), getattr(torch, legacy))
    assert ours == theirs
    assert not isinstance(distrain.zeros(2), distrain.cuda.FloatTensor)  # a cpu tensor is no cuda tensor
