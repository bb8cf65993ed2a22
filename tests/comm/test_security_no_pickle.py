"""No pickle from the network: what other ranks send is decoded as plain data, never run as code.

A rank of a parameter-server job is whoever joined with the job's secret; under MPI it is
whatever process MPI connected. `allgather_object` (DistributedDataParallel's parameter
check) used to unpickle their bytes, so one forged rank could run code in every training
process. These tests forge such a rank and check that its payload is refused by name,
that the check itself still works with plain values, and that the library holds no
unpickling of foreign bytes anywhere.
"""
import ast
import os
import pickle
import re
import threading

import numpy as np
import pytest

import distrain
import distrain.nn as nn
from distrain.comm import nccl
from distrain.comm.base import CommunicatorError
from distrain.comm.local import LocalCommunicator
from distrain.comm.plain_values import PlainValueError, decode, encode
from distrain.comm.ps.client import PSCommunicator
from distrain.comm.ps.server import ParameterServer
from distrain.errors import DistrainError
from distrain.parallel import DistributedDataParallel

SECRET = b"a-test-secret-for-no-pickle-0123"
LIBRARY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "distrain")


class _CreatesAFile:
    """Unpickling this calls open(path, "w"): a stand-in for any code a pickle can run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def exploit(path):
    return pickle.dumps(_CreatesAFile(str(path)))


def run_ranks(bodies, timeout=30.0):
    """Run bodies[r](communicator of rank r) in threads around one authenticated server; {rank: result or error}."""
    server = ParameterServer(len(bodies), secret=SECRET).start()
    outcomes = {}

    def rank_main(rank):
        comm = PSCommunicator(server.address, rank, len(bodies), secret=SECRET, timeout=10.0)
        try:
            outcomes[rank] = bodies[rank](comm)
        except Exception as error:  # noqa: BLE001 (handed to the test)
            outcomes[rank] = error
        finally:
            comm.close()

    threads = [threading.Thread(target=rank_main, args=(rank,), daemon=True) for rank in range(len(bodies))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout)
        assert not any(thread.is_alive() for thread in threads), "a rank thread hung"
    finally:
        server.close()
    return outcomes


def model(out_features=2):
    distrain.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, out_features))


def test_a_forged_ranks_pickle_in_the_ddp_parameter_check_cannot_run_code(tmp_path):
    witness = tmp_path / "witness"
    pickle.loads(exploit(witness)).close()  # the payload does run code when unpickled ...
    assert witness.exists()
    marker = tmp_path / "pwned"

    def forged_rank(comm):
        """Joins as rank 1 and answers allgather_object's two allgathers with a pickle."""
        payload = np.frombuffer(exploit(marker), dtype=np.uint8)
        sizes = comm.allgather(np.array([payload.size], dtype=np.int64))[:, 0]
        padded = np.zeros(int(sizes.max()), dtype=np.uint8)
        padded[:payload.size] = payload
        comm.allgather(padded)

    outcomes = run_ranks([lambda comm: DistributedDataParallel(model(), comm=comm), forged_rank])
    assert not marker.exists(), "the forged rank's pickle ran code in the real rank"  # ... but not here
    error = outcomes[0]
    assert isinstance(error, PlainValueError) and isinstance(error, DistrainError), error
    assert "rank 1 sent bytes that are not a msgpack-encoded plain value" in str(error), error


def test_the_ddp_parameter_check_works_with_plain_values_and_names_a_difference():
    same = run_ranks([lambda comm: DistributedDataParallel(model(), comm=comm)] * 2)
    assert all(isinstance(outcome, DistributedDataParallel) for outcome in same.values()), same
    different = run_ranks([lambda comm: DistributedDataParallel(model(2), comm=comm),
                           lambda comm: DistributedDataParallel(model(5), comm=comm)])
    for rank, outcome in different.items():
        assert isinstance(outcome, DistrainError), outcome
        assert re.search(r"parameter 2 is \('2.weight', \((2|5), 4\), 'float32'\)", str(outcome)), outcome


def test_allgather_object_round_trips_plain_values_on_every_rank():
    values = [{"name": "w", "shape": (2, 3), "ok": True, "scale": np.float32(0.5), "raw": b"\x00\xff",
               "nested": [None, (1, [2.5, "x"]), {"k": np.int64(-7)}]},
              [("a", (4,), "float32"), ("b", (), "int64")]]
    outcomes = run_ranks([lambda comm, v=v: comm.allgather_object(v) for v in values])
    expected = [{"name": "w", "shape": (2, 3), "ok": True, "scale": 0.5, "raw": b"\x00\xff",
                 "nested": [None, (1, [2.5, "x"]), {"k": -7}]},
                [("a", (4,), "float32"), ("b", (), "int64")]]
    for rank in range(2):
        assert outcomes[rank] == expected, outcomes[rank]
        assert type(outcomes[rank][0]["shape"]) is tuple and type(outcomes[rank][0]["scale"]) is float


@pytest.mark.parametrize("value, named", [
    ({1, 2}, r"value is a set"),
    ({"weights": np.zeros(3)}, r"value\['weights'\] is a numpy.ndarray.*send arrays with allgather"),
    ([1, object()], r"value\[1\] is a object"),
    ({3: "x"}, r"key 3 of type int; dict keys must be str"),
    ([2 ** 70], r"value\[0\] is an int that does not fit in 64 bits"),
    ([np.datetime64("2020-01-01")], r"value\[0\] is a numpy.datetime64"),
    (_CreatesAFile("/nonexistent"), r"value is a .*_CreatesAFile"),
])
def test_allgather_object_refuses_what_is_not_plain_naming_it_on_every_backend(value, named):
    with pytest.raises(PlainValueError, match=named):
        LocalCommunicator().allgather_object(value)  # a world of one too, so a script fails the same everywhere


def test_a_value_that_contains_itself_is_refused_not_a_recursion_error():
    loop = []
    loop.append(loop)
    with pytest.raises(PlainValueError, match="nested more than"):
        encode(loop)


@pytest.mark.parametrize("data, why", [
    (b"\xc1", "not a msgpack"),                          # a byte msgpack never uses
    (b"\x92\x01", "not a msgpack"),                      # truncated
    (b"\xd4\x07\x00", "unknown msgpack extension type 7"),
    (b"\xd6\xff\x00\x00\x00\x01", "not plain data"),     # msgpack's timestamp extension: not a plain type
    (b"\x81\x01\x02", "not a msgpack"),                  # an int map key
    (b"\x91" * 5000 + b"\x00", "not"),                  # nesting that would blow the stack
])
def test_bytes_that_are_not_a_plain_value_are_refused_naming_the_sender(data, why):
    with pytest.raises(PlainValueError, match=f"rank 3 sent .*{why}"):
        decode(data, "rank 3")


def test_a_rank_announcing_a_huge_value_is_refused_before_anything_is_allocated():
    def announces_an_exabyte(comm):
        comm.allgather(np.array([2 ** 60], dtype=np.int64))

    outcomes = run_ranks([lambda comm: comm.allgather_object("small"), announces_an_exabyte])
    assert isinstance(outcomes[0], CommunicatorError), outcomes[0]
    assert "rank 1 announced an allgather_object value of 1152921504606846976 bytes" in str(outcomes[0])


class _MPIWithoutPickle:
    """An MPI communicator of mpi4py's shape whose pickling methods fail: only buffer calls are allowed."""

    def __init__(self, root_buffers):
        self.root_buffers = list(root_buffers)  # what rank 0 broadcasts, in order

    def Bcast(self, buffer, root=0):
        buffer[...] = np.frombuffer(self.root_buffers.pop(0), dtype=buffer.dtype).reshape(buffer.shape)

    def bcast(self, obj, root=0):
        raise AssertionError("mpi4py's bcast pickles what it sends: a rank must never unpickle it")


def test_the_nccl_unique_id_crosses_mpi_as_bytes_not_a_pickle():
    unique_id = bytes(range(128))
    raw = nccl._encode_unique_id(unique_id)
    comm = nccl.NCCLCommunicator.__new__(nccl.NCCLCommunicator)  # rank 1's side, without a GPU
    comm.rank = 1
    mpi = _MPIWithoutPickle([np.array([len(raw)], dtype=np.int64).tobytes(), raw])
    assert comm._exchange_unique_id(mpi) == unique_id
    with pytest.raises(CommunicatorError, match="claims 1099511627776 bytes"):
        nccl.broadcast_bytes_over_mpi(_MPIWithoutPickle([np.array([2 ** 40], dtype=np.int64).tobytes()]), None)


UNPICKLING_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
MPI_OBJECT_METHODS = {"bcast", "allgather", "gather", "scatter", "recv", "irecv", "sendrecv", "allreduce", "reduce",
                      "alltoall"}  # mpi4py's lowercase methods pickle; its Bcast/Allgather/... move buffers


def _runs_foreign_code(node):
    """Why `node` can run code named by its input (None if it cannot)."""
    if isinstance(node, ast.Call):
        function = node.func
        if isinstance(function, ast.Name) and function.id in ("eval", "exec", "compile", "__import__"):
            return f"{function.id}()"
        if isinstance(function, ast.Attribute):
            owner = function.value
            if isinstance(owner, ast.Name) and owner.id in UNPICKLING_MODULES and function.attr.startswith(
                    ("load", "Unpickler")):
                return f"{owner.id}.{function.attr}()"
            if function.attr in ("recv_pyobj", "recv_serialized"):
                return function.attr
            names_mpi = (isinstance(owner, ast.Name) and "mpi" in owner.id.lower()) or (
                isinstance(owner, ast.Attribute) and owner.attr.startswith("COMM_"))
            if names_mpi and function.attr in MPI_OBJECT_METHODS:
                return f"mpi4py's pickling {function.attr}()"
        for keyword in node.keywords:
            if keyword.arg == "allow_pickle" and not (isinstance(keyword.value, ast.Constant)
                                                      and keyword.value.value is False):
                return "allow_pickle"
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        if any(module.split(".")[0] in UNPICKLING_MODULES - {"pickle"} for module in modules):
            return "imports " + ", ".join(modules)
    return None


# The one place allowed to compile code: distrain.jit's replay, from source it writes itself out of checked parts
# (NOTE [ Generated code is made of checked parts ] in engine/jit/codegen.py; tested in tests/jit/test_codegen.py).
GENERATES_ITS_OWN_CODE = {os.path.join("engine", "jit", "codegen.py"): {"exec()", "compile()"}}


def test_the_library_has_no_unpickling_of_foreign_bytes():
    """No call in distrain can unpickle or evaluate what it reads (the checkpoint and shard readers, the
    communicators, the launcher): an AST scan, so that a new pickle.loads anywhere fails here."""
    hits = []
    for directory, _, files in os.walk(LIBRARY):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                with open(path, encoding="utf-8") as source:
                    tree = ast.parse(source.read(), path)
                exempt = GENERATES_ITS_OWN_CODE.get(os.path.relpath(path, LIBRARY), set())
                for node in ast.walk(tree):
                    why = _runs_foreign_code(node)
                    if why and why not in exempt:
                        hits.append(f"{os.path.relpath(path, LIBRARY)}:{node.lineno}: {why}")
    assert not hits, "code that can unpickle or evaluate foreign input:\n" + "\n".join(hits)
