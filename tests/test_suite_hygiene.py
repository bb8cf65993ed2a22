"""The test suite's own rules: it skips only for a stated, true reason and fails loudly otherwise.

- CUDA tests are skipped only where CuPy or a device is absent; a broken CuPy fails the run
  (conftest.cuda_status, tested here with fake CuPy modules).
- The lecture-notes tests run when ../shared/seeds is beside the clone, skip with that reason
  when it is not, and fail when CI requires the notes.
- No CUDA test calls `.numpy()` on a device tensor (it raises on a GPU: use `.cpu().numpy()`).
"""
import ast
import glob
import os
import types

import pytest

from .conftest import cuda_status
from .examples.test_lecture_code import notes_skip_reason

TESTS = os.path.dirname(os.path.abspath(__file__))


class CUDARuntimeError(RuntimeError):
    """What cupy.cuda.runtime raises: an error with the CUDA status code."""

    def __init__(self, status, text):
        super().__init__(f"{text} ({status})")
        self.status = status


def fake_cupy(count=None, error=None):
    def device_count():
        if error is not None:
            raise error
        return count
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=device_count)))


def status_with(spec=True, module=None, import_error=None, driver=False):
    def import_module(name):
        if import_error is not None:
            raise import_error
        return module
    return cuda_status(find_spec=lambda name: object() if spec else None, import_module=import_module,
                       driver_present=lambda: driver)


def test_cuda_tests_run_where_cupy_sees_a_device():
    assert status_with(module=fake_cupy(count=2)) == (True, "")


@pytest.mark.parametrize("case, expected_reason", [
    ({"spec": False}, "CuPy is not installed"),
    ({"module": fake_cupy(count=0)}, "CuPy sees none"),
    ({"module": fake_cupy(error=CUDARuntimeError(100, "cudaErrorNoDevice: no CUDA-capable device is detected"))},
     "cudaErrorNoDevice"),
    ({"module": fake_cupy(error=CUDARuntimeError(35, "cudaErrorInsufficientDriver")), "driver": False},
     "cudaErrorInsufficientDriver"),
])
def test_cuda_tests_skip_only_where_cupy_or_a_device_is_absent(case, expected_reason):
    available, reason = status_with(**case)
    assert not available and expected_reason in reason and reason.startswith("needs")


@pytest.mark.parametrize("case, named", [
    ({"import_error": ImportError("libcudart.so.12: cannot open shared object file")}, "libcudart.so.12"),
    ({"import_error": AttributeError("module 'numpy' has no attribute 'bool8'")}, "bool8"),
    ({"module": fake_cupy(error=CUDARuntimeError(3, "cudaErrorInitializationError"))}, "cudaErrorInitializationError"),
    ({"module": fake_cupy(error=CUDARuntimeError(35, "cudaErrorInsufficientDriver")), "driver": True},
     "cudaErrorInsufficientDriver"),  # a driver is there but too old for this CuPy: broken, not absent
    ({"module": fake_cupy(error=OSError("libcuda.so: bad ELF header"))}, "bad ELF header"),
])
def test_a_broken_cupy_fails_loudly_instead_of_skipping(case, named):
    with pytest.raises(RuntimeError, match="CuPy") as caught:
        status_with(**case)
    assert named in str(caught.value)


def test_the_lecture_tests_skip_with_the_reason_when_the_notes_are_absent(tmp_path):
    reason = notes_skip_reason(seeds=str(tmp_path), environ={})
    assert str(tmp_path) in reason and "not beside this clone" in reason and "../shared/seeds" in reason


def test_the_lecture_tests_fail_where_ci_requires_the_notes(tmp_path):
    with pytest.raises(RuntimeError, match="DISTRAIN_REQUIRE_LECTURE_NOTES is set"):
        notes_skip_reason(seeds=str(tmp_path), environ={"DISTRAIN_REQUIRE_LECTURE_NOTES": "1"})


def test_the_lecture_tests_run_when_the_notes_are_there(tmp_path):
    (tmp_path / "001_lecture.txt").write_text("```\nimport torch\n```\n")
    assert notes_skip_reason(seeds=str(tmp_path), environ={"DISTRAIN_REQUIRE_LECTURE_NOTES": "1"}) is None


# ----------------------------------------------------------------------------- .numpy() on a device tensor

TORCH_HINTS = ("torch", "to_torch", "TF.")


def device_numpy_calls(source):
    """(line, call) for each `.numpy()` on a name holding a tensor made on the test's `device`.

    A name is on the device when a test taking `device` assigns it from an expression that
    uses `device` or another such name (and not torch, nor `.cpu()`); `.numpy()` on it, without
    `.cpu()` in between, raises on a GPU. A static check, so it runs on machines without one.
    """
    found = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef) or "device" not in [a.arg for a in function.args.args]:
            continue
        on_device = {"device"}
        for node in ast.walk(function):
            if isinstance(node, ast.Assign):
                text = ast.unparse(node.value)
                used = {name.id for name in ast.walk(node.value) if isinstance(name, ast.Name)}
                if used & on_device and ".cpu()" not in text and not any(hint in text for hint in TORCH_HINTS):
                    on_device.update(target.id for target in node.targets if isinstance(target, ast.Name))
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "numpy":
                root = node.func.value
                while isinstance(root, (ast.Attribute, ast.Call, ast.Subscript)):
                    root = root.func if isinstance(root, ast.Call) else root.value
                if ".cpu()" not in ast.unparse(node.func.value) and isinstance(root, ast.Name) and root.id in on_device:
                    found.append((node.lineno, ast.unparse(node)))
    return found


def test_the_check_finds_numpy_on_a_device_tensor_and_accepts_the_fixes():
    source = '''
def test_relu(device):
    x = to_distrain(np.ones(3), device)
    out = relu(x)
    ok = x.cpu().numpy(), to_numpy(out), out.detach().cpu().numpy()
    reference = to_torch(np.ones(3)).numpy()
    return x.numpy(), out.detach().numpy()

def test_cpu_only():
    x = distrain.ones(3)
    return x.numpy()
'''
    assert [call for _, call in device_numpy_calls(source)] == ["x.numpy()", "out.detach().numpy()"]


def test_no_cuda_test_calls_numpy_on_a_device_tensor():
    offenders = []
    for path in sorted(glob.glob(os.path.join(TESTS, "**", "*.py"), recursive=True)):
        with open(path, encoding="utf-8") as file:
            offenders += [f"{os.path.relpath(path, TESTS)}:{line}: {call}" for line, call in device_numpy_calls(file.read())]
    assert offenders == [], "on a GPU these raise; use .cpu().numpy():\n" + "\n".join(offenders)
