"""The trainer's configuration: defaults, the TOML file, --set, and the one-line errors for every mistake."""
import os
import tomllib

import pytest

from distrain.train import config
from distrain.train.config import ConfigError

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_configs_default_toml_lists_every_key_with_its_default():
    with open(os.path.join(REPOSITORY, "configs", "default.toml"), "rb") as file:
        listed = config.flatten(tomllib.load(file))
    assert listed == config.defaults()
    with open(os.path.join(REPOSITORY, "configs", "default.toml")) as file:
        text = file.read()
    for name in config.KEYS:  # and each is explained by a comment just above it
        key = name.split(".")[-1]
        line = next(i for i, l in enumerate(text.splitlines()) if l.startswith(f"{key} =") or l == f"[{key}]")
        assert text.splitlines()[line - 1].startswith("#") or text.splitlines()[line + 1].startswith("#"), name


def test_file_then_set_override_defaults_in_order(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('model = "mlp"\nlr = 1\nsteps = 7\n[synthetic]\nshape = [1, 4, 4]\n[model_args]\nhidden = [8]\n')
    resolved = config.load(str(path), ["lr=0.5", "run_dir=runs/x", "synthetic.classes=3", "model_args.dropout=0.25",
                                       "tensorboard=false"])
    assert resolved["model"] == "mlp" and resolved["steps"] == 7
    assert resolved["lr"] == 0.5 and isinstance(resolved["lr"], float)  # an int in the file is a float key's number
    assert resolved["run_dir"] == "runs/x"  # a bare word is a string
    assert resolved["synthetic.shape"] == [1, 4, 4] and resolved["synthetic.classes"] == 3
    assert resolved["model_args"] == {"hidden": [8], "dropout": 0.25}
    assert resolved["tensorboard"] is False
    assert resolved["batch_size"] == config.KEYS["batch_size"].default


def test_the_written_config_reads_back_equal(tmp_path):
    resolved = config.load(None, ["lr=0.1234567890123", "run_dir=a \"quoted\" \\ path", "model_args.stem=cifar",
                                  "synthetic.shape=[3, 8, 8]"])
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml(resolved))
    assert config.load(str(path)) == resolved


@pytest.mark.parametrize("assignment, words", [
    ("lr=fast", ["lr", '"fast"', "a number"]),
    ("batch_size=0", ["batch_size", "0", ">= 1"]),
    ("batch_size=3.5", ["batch_size", "3.5", "an integer"]),
    ("epochs=true", ["epochs", "true", "an integer"]),
    ("optimizer=adamax", ["optimizer", '"adamax"', '"sgd"', '"adam"', '"rmsprop"']),
    ("synthetic.shape=[3, 32]", ["synthetic.shape", "[3, 32]", "a list of 3 positive ints"]),
    ("lr=nan", ["lr", "nan", "finite"]),
    ("learning_rate=0.1", ["unknown key 'learning_rate'", "configs/default.toml"]),
    ("bach_size=3", ["unknown key 'bach_size'", "did you mean batch_size"]),
    ("lr", ["--set 'lr'", "KEY=VALUE"]),
    ("dataset=/no/such/dir", ["dataset", "/no/such/dir", "no such directory", '"digits"']),
])
def test_a_bad_value_names_the_key_the_value_and_what_is_accepted(assignment, words):
    with pytest.raises(ConfigError) as caught:
        config.load(None, [assignment])
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


def test_a_bad_file_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[synthetic]\nclases = 3\n")
    with pytest.raises(ConfigError, match=r"bad.toml: unknown key 'synthetic.clases'.*synthetic.classes"):
        config.load(str(path))
    path.write_text("lr = \n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        config.load(str(path))
    with pytest.raises(ConfigError, match="no such file"):
        config.load(str(tmp_path / "missing.toml"))
