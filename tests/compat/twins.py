"""Running a PyTorch program and its distrain twin, the same source but for the imports, and reading their numbers.

The programs in tests/compat/programs/ are PyTorch programs. `distrain_twin` writes the
same program with only its import lines changed (torch -> distrain), and checks that
nothing else differs: the compatibility promise, tested literally.
"""
import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from tests.process_group import free_port, run_group  # noqa: F401 (free_port: the tests' import path)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGRAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "programs")
END_OF_IMPORTS = "# --- end of imports"
_RENAMES = [("torch", "distrain")]  # in the import lines: torch.utils.data -> distrain.utils.data, and so on


def program(name):
    return os.path.join(PROGRAMS, name)


def distrain_twin(name, directory, programs=PROGRAMS):
    """Write program `name` (in the folder `programs`) with distrain's imports into `directory`; returns its path."""
    with open(os.path.join(programs, name), encoding="utf-8") as handle:
        source = handle.read()
    head, marker, body = source.partition(END_OF_IMPORTS)
    assert marker, f"{name} has no '{END_OF_IMPORTS}' line"
    lines = []
    for line in head.splitlines(keepends=True):
        if re.match(r"\s*import torch\s*$", line):  # the module itself keeps its name in the program
            line = line.replace("import torch", "import distrain as torch")
        elif re.match(r"\s*(import|from)\s+torch\b", line):
            for old, new in _RENAMES:
                line = re.sub(rf"\b{re.escape(old)}\b", new, line)
            assert "torch" not in line.split(" as ")[0], line
        lines.append(line)
    path = os.path.join(str(directory), name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("".join(lines) + marker + body)
    return path


_PRIVATE = tempfile.mkdtemp(prefix="distrain-twins-")  # the tests' own user secret, not the one in ~/.config
atexit.register(shutil.rmtree, _PRIVATE, True)


def environment(**extra):
    """Both twins' environment: one BLAS thread per rank (results independent of the machine's cores), and a
    rendezvous secret file of the tests' own for ranks that meet without a launcher (distrain/rendezvous.py)."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("DISTRAIN_", "MASTER_", "OMPI_", "PMI_")) and name not in ("RANK", "WORLD_SIZE",
                                                                                           "LOCAL_RANK")}
    env.update(PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               DISTRAIN_USER_SECRET=os.path.join(_PRIVATE, "rendezvous-secret"), **extra)
    return env


def run(command, timeout=240, env=None, cwd=None, oracle=False):
    """Run `command` (killing its process group on a timeout); its output, after asserting it succeeded.

    oracle: this is the PyTorch twin. PyTorch 2.13's gloo now and then aborts (SIGABRT) while
    tearing down a process group, after the program printed everything; such a run still
    serves as the oracle, since the comparisons require every number it should have printed.
    distrain's runs must always end cleanly.
    """
    result = run_group(command, timeout, merge_output=True, env=env or environment(), cwd=cwd)
    aborted_in_teardown = oracle and "SIGABRT" in result.stdout
    assert result.returncode == 0 or aborted_in_teardown, \
        f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-6000:]}"
    return result.stdout


def json_results(command, ranks, cwd=None, oracle=False, **extra_environment):
    """{rank: value} from each rank's `RESULT {json}` line (found anywhere: torchrun keeps no line whole)."""
    output = run(command, env=environment(**extra_environment), cwd=cwd, oracle=oracle)
    found = {}
    for piece in output.split("RESULT ")[1:]:
        value, _ = json.JSONDecoder().raw_decode(piece)
        found[value["rank"]] = value
    assert sorted(found) == list(range(ranks)), output[-6000:]
    return found


def torchrun(ranks, path, *arguments, port):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_addr",
            "127.0.0.1", "--master_port", str(port), path, *map(str, arguments)]


def distrain_launch(ranks, backend, path, *arguments):
    return [sys.executable, "-m", "distrain.launch", "--nproc_per_node", str(ranks), "--backend", backend,
            path, *map(str, arguments)]


def numbers(output, tag, fields):
    """{(field, ...): value} from every `TAG field... value` in the output (`fields` words before the value).

    Found anywhere in the text: torchrun copies its ranks' output without keeping their lines whole.
    """
    pattern = rf"{tag}((?: [\w.-]+){{{fields}}}) ([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|nan|inf)"
    return {tuple(match.group(1).split()): float(match.group(2)) for match in re.finditer(pattern, output)}


def assert_same_numbers(ours, theirs, what, rtol=2e-5, atol=1e-6):
    """Every number of PyTorch's run is in ours, equal at float32 tolerance (the reduction orders differ)."""
    assert theirs, f"the PyTorch twin printed no {what}"
    assert sorted(ours) == sorted(theirs), f"{what}: distrain printed {sorted(ours)[:5]}..., PyTorch {sorted(theirs)[:5]}..."
    keys = sorted(theirs)
    np.testing.assert_allclose([ours[k] for k in keys], [theirs[k] for k in keys], rtol=rtol, atol=atol,
                               err_msg=what)


__all__ = ["assert_same_numbers", "distrain_launch", "distrain_twin", "environment", "free_port", "numbers",
           "program", "run", "subprocess", "torchrun"]
