"""launchers/single_node_multi_gpu.sh counts the GPUs with nvidia-smi and says so when it cannot.

Without nvidia-smi on PATH the script used to end with exit status 127 and no message (its
`nvidia-smi ... 2>/dev/null` failed under `set -euo pipefail`). These tests run it against a
PATH holding only stand-ins: no nvidia-smi, one that fails, one that lists two GPUs (with a
stand-in python that prints the command it was given).
"""
import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCHER = os.path.join(REPO, "launchers", "single_node_multi_gpu.sh")
BASH = shutil.which("bash")


def stand_in(directory, name, body):
    path = directory / name
    path.write_text(f"#!{BASH}\n{body}\n")
    path.chmod(0o755)
    return str(path)


def run_launcher(path, **env):
    environment = {key: value for key, value in os.environ.items() if key not in ("NUM_GPUS", "PYTHON")}
    environment.update(PATH=path, **env)
    return subprocess.run([BASH, LAUNCHER, "train.py", "--epochs", "2"], capture_output=True, text=True,
                          env=environment, timeout=30)


def test_without_nvidia_smi_it_says_so_and_exits_1(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    result = run_launcher(str(empty))
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "nvidia-smi is not on PATH" in result.stderr and "NUM_GPUS" in result.stderr, result.stderr


def test_a_failing_nvidia_smi_is_reported_with_its_message(tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    stand_in(tools, "nvidia-smi", 'echo "NVIDIA-SMI has failed because it could not communicate with the driver"; '
                                  "exit 9")
    result = run_launcher(f"{tools}{os.pathsep}/usr/bin{os.pathsep}/bin")
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "nvidia-smi failed" in result.stderr and "could not communicate with the driver" in result.stderr


@pytest.mark.parametrize("listing, num_gpus, expected", [
    ("GPU 0: NVIDIA H100 (UUID: GPU-1)\nGPU 1: NVIDIA H100 (UUID: GPU-2)", None, "2"),
    ("", "3", "3"),  # NUM_GPUS wins, nvidia-smi is not needed
])
def test_it_starts_one_rank_per_gpu(tmp_path, listing, num_gpus, expected):
    tools = tmp_path / "bin"
    tools.mkdir()
    if listing:
        stand_in(tools, "nvidia-smi", f"printf '%s\\n' '{listing}'")
    python = stand_in(tools, "python", 'echo "python $*"')
    env = {"PYTHON": python} if num_gpus is None else {"PYTHON": python, "NUM_GPUS": num_gpus}
    result = run_launcher(f"{tools}{os.pathsep}/usr/bin{os.pathsep}/bin", **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"python -m distrain.launch -n {expected} train.py --epochs 2"


def test_a_gpu_count_that_is_not_a_number_is_refused(tmp_path):
    result = run_launcher("/usr/bin:/bin", NUM_GPUS="two")
    assert result.returncode == 2 and "NUM_GPUS must be a whole number, got 'two'" in result.stderr
