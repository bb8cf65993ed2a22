"""Asynchronous mode's core, one served shard at a time (NOTE [ Stale synchronous parallel ] in
distrain/comm/ps/stale_synchronous.py), in-process: no sockets, a `reply` that records every answer.

The oracles: a distrain optimizer stepped here on the rank-order mean of the gradients (K = 0:
the same bits, as synchronous training steps on the allreduce's mean), the closed forms of
the staleness bound, of staleness itself and of damping, and the requests a served shard must
refuse, each with a ProtocolError naming what is wrong.
"""
import collections
import time

import numpy as np
import pytest

import distrain
from distrain import nn
from distrain.comm.ps import served_optimizer
from distrain.comm.ps.protocol import ProtocolError
from distrain.comm.ps.stale_synchronous import INFINITE, ServedShard
from distrain.engine.flat import pack_parameters

SIZE = 12
SGD_MOMENTUM = [{"lr": 0.1, "momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False,
                 "maximize": False}]


def sgd(lr, momentum=0.0):
    return [{**SGD_MOMENTUM[0], "lr": lr, "momentum": momentum}]


def adam(lr):
    return [{"lr": lr, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False, "maximize": False,
             "decoupled_weight_decay": False}]


def identity(rank):
    return f"peer-{rank}".encode()


class Job:
    """One ServedShard and the ranks talking to it: builds their requests as served_model.py does, and keeps
    every answer as (rank, header, the payload's bytes when answered, the payload object)."""

    def __init__(self, world_size, optimizer="SGD", groups=SGD_MOMENTUM, staleness=0, damping=False, runs=None,
                 dtype="float32", size=SIZE, model="model-digest"):
        self.world_size = world_size
        self.description = {"table": 0, "shard": 0, "model": model, "dtype": dtype, "shape": [size],
                            "optimizer": optimizer, "groups": groups, "runs": runs or [[0, size, 0]],
                            "staleness": staleness, "damping": damping}
        self.groups = groups
        self.dtype = np.dtype(dtype)
        self.size = size
        self.seq = collections.Counter()
        self.clock = collections.Counter()
        self.answers = []
        self.shard = ServedShard({"op": "serve", **self.description, "rank": 0, "seq": 0}, world_size, self.reply)

    def reply(self, to, header, payload=b""):
        rank = int(to.decode().rsplit("-", 1)[1])
        copied = payload.tobytes() if isinstance(payload, np.ndarray) else bytes(payload)
        self.answers.append((rank, header, copied, payload))

    def take(self):
        """The answers since the last take."""
        answers, self.answers = self.answers, []
        return answers

    def _numbered(self, rank, header):
        header = {**header, "rank": rank, "seq": self.seq[rank]}
        self.seq[rank] += 1
        return header

    def serve_header(self, rank, **changes):
        return self._numbered(rank, {"op": "serve", **self.description, **changes})

    def serve(self, rank, values=None, **changes):
        payload = [] if values is None else [np.ascontiguousarray(values, self.dtype).tobytes()]
        self.shard.serve(self.serve_header(rank, **changes), payload, identity(rank))

    def push(self, rank, gradient, clock=None, groups=None, dtype=None, shape=None):
        header = self._numbered(rank, {"op": "push", "table": 0, "shard": 0,
                                       "clock": self.clock[rank] if clock is None else clock,
                                       "dtype": dtype or self.dtype.name, "shape": shape or [self.size],
                                       "groups": groups or self.groups})
        payload = np.ascontiguousarray(gradient, header["dtype"]).tobytes()
        self.shard.push(header, [payload[:16], payload[16:]], identity(rank))  # in two frames, as large ones come
        self.clock[rank] += 1

    def start(self, values):
        """Every rank registers, rank 0 with the starting values; the answers to the registrations."""
        for rank in range(self.world_size):
            self.serve(rank, values if rank == 0 else None)
        answers = self.take()
        assert sorted(rank for rank, *_ in answers) == list(range(self.world_size)), answers
        return answers


def values(seed, size=SIZE, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(size).astype(dtype)


def gradient(rank, step, size=SIZE, dtype=np.float32):
    """A different gradient per rank and step, magnitudes 1e-3..1e3 (a sum's rounding depends on its order)."""
    rng = np.random.default_rng((rank, step))
    return (rng.standard_normal(size) * 10.0 ** rng.uniform(-3, 3, size)).astype(dtype)


def ranks_answered(answers):
    return [rank for rank, *_ in answers]


# -- K = 0: rounds, bit for bit synchronous training ----------------------------------------------------

def rank_order_mean(gradients):
    """What synchronous training steps on: the allreduce's sum, rank 0 + rank 1 + ... (float16 summed in float32
    and rounded once), then divided by the number of ranks in the gradients' dtype."""
    dtype = gradients[0].dtype
    total = gradients[0].astype(np.float32 if dtype == np.float16 else dtype)
    for part in gradients[1:]:
        total = total + part
    return total.astype(dtype) / dtype.type(len(gradients))


class Oracle:
    """The same optimizer built here from distrain.optim over parameters of the runs' sizes (one per run)."""

    def __init__(self, cls, start, runs, groups):
        self.runs = runs
        self.parameters = [nn.Parameter(distrain.tensor(start[low:high].copy())) for low, high, _ in runs]
        param_groups = []
        for number, hyperparameters in enumerate(groups):
            members = [p for p, (_, _, group) in zip(self.parameters, runs) if group == number]
            param_groups.append({"params": members, **{name: tuple(value) if isinstance(value, list) else value
                                                        for name, value in hyperparameters.items()}})
        self.optimizer = cls(param_groups)

    def step(self, mean, lr_of_group=None):
        for number, lr in (lr_of_group or {}).items():
            self.optimizer.param_groups[number]["lr"] = lr
        for parameter, (low, high, _) in zip(self.parameters, self.runs):
            parameter.grad = distrain.tensor(mean[low:high].copy())
        self.optimizer.step()

    def values(self):
        return np.concatenate([parameter.detach().numpy() for parameter in self.parameters])


K0_CASES = {
    "SGD momentum, two param groups": (distrain.optim.SGD, "SGD", [sgd(0.1, 0.9)[0], sgd(0.02, 0.5)[0]],
                                       [[0, 5, 0], [5, 9, 1], [9, SIZE, 0]], np.float32),
    "Adam, a step schedule": (distrain.optim.Adam, "Adam", adam(0.01), [[0, SIZE, 0]], np.float32),
    "SGD momentum, float64": (distrain.optim.SGD, "SGD", sgd(0.1, 0.9), [[0, SIZE, 0]], np.float64),
}


@pytest.mark.parametrize("case", list(K0_CASES))
def test_k0_steps_once_per_round_on_the_rank_order_mean_bit_for_bit(case):
    cls, name, groups, runs, dtype = K0_CASES[case]
    world, start = 3, values(0, dtype=dtype)
    job = Job(world, optimizer=name, groups=groups, runs=runs, dtype=np.dtype(dtype).name)
    oracle = Oracle(cls, start, runs, groups)
    for _, header, payload, _ in job.start(start):
        assert header == {"op": "serve", "seq": 0, "version": 0, "clock": 0} and payload == start.tobytes()
    arrivals = [[2, 0, 1], [0, 1, 2], [1, 2, 0], [2, 1, 0]]
    for step, order in enumerate(arrivals):
        lr = groups[0]["lr"] * 0.5 ** (step // 2)  # a StepLR(step_size=2, gamma=0.5) on group 0
        pushed_groups = [{**groups[0], "lr": lr}] + groups[1:]
        gradients = [gradient(rank, step, dtype=dtype) for rank in range(world)]
        for arrived, rank in enumerate(order):
            job.push(rank, gradients[rank], groups=pushed_groups)
            if arrived < world - 1:
                assert job.take() == [], f"step {step}: answered before rank {order[-1]} pushed"
        oracle.step(rank_order_mean(gradients), {0: lr})
        answers = job.take()
        assert ranks_answered(answers) == [0, 1, 2]
        for rank, header, payload, _ in answers:
            assert header == {"op": "push", "seq": step + 1, "version": step + 1, "clock": step + 1, "staleness": 0}
            assert payload == oracle.values().tobytes(), (case, step, rank)
    assert job.shard.staleness_counts == {0: world * len(arrivals)}


def test_k0_float16_sums_in_float32_rounds_once_then_divides():
    world, start = 2, values(1, dtype=np.float16)
    job = Job(world, groups=sgd(0.5), dtype="float16")
    job.start(start)
    gradients = [gradient(rank, 0, dtype=np.float16) for rank in range(world)]
    for rank in range(world):
        job.push(rank, gradients[rank])
    mean = (gradients[0].astype(np.float32) + gradients[1]).astype(np.float16) / np.float16(2)
    oracle = Oracle(distrain.optim.SGD, start, [[0, SIZE, 0]], sgd(0.5))
    oracle.step(mean)
    assert {payload for *_, payload, _ in job.take()} == {oracle.values().tobytes()}


# -- K >= 1: the bound, staleness, damping -----------------------------------------------------------------

def answered(answers):
    """(rank, clock, staleness) of each answer."""
    return [(rank, header["clock"], header.get("staleness")) for rank, header, *_ in answers]


def test_k2_holds_a_rank_three_steps_ahead_of_the_slowest_until_the_slowest_pushes():
    job = Job(3, groups=sgd(0.1), staleness=2)
    job.start(values(2))
    job.push(0, gradient(0, 0))
    job.push(0, gradient(0, 1))
    assert answered(job.take()) == [(0, 1, 0), (0, 2, 0)]  # 1 and 2 steps ahead: within the bound
    job.push(0, gradient(0, 2))
    assert job.take() == []  # 3 ahead of ranks 1 and 2
    job.push(1, gradient(1, 0))
    assert answered(job.take()) == [(1, 1, 3)]  # rank 2 is still at 0: rank 0 stays held
    job.push(2, gradient(2, 0))
    assert answered(job.take()) == [(0, 3, 0), (2, 1, 4)]  # the slowest moved to 1: rank 0 is 2 ahead
    assert job.shard.version == 5 and dict(job.shard.clock) == {0: 3, 1: 1, 2: 1}
    job.push(1, gradient(1, 1))
    job.push(1, gradient(1, 2))
    assert answered(job.take()) == [(1, 2, 1), (1, 3, 0)]
    job.push(1, gradient(1, 3))  # 3 ahead of rank 2
    job.push(0, gradient(0, 3))  # 3 ahead of rank 2
    assert job.take() == []
    job.push(2, gradient(2, 1))
    assert answered(job.take()) == [(0, 4, 3), (1, 4, 0), (2, 2, 4)]  # both released at once, in rank order


def test_k_infinite_never_holds_an_answer_back():
    job = Job(3, groups=sgd(0.1), staleness=INFINITE)
    job.start(values(3))
    for step in range(50):
        job.push(1, gradient(1, step))
        assert answered(job.take()) == [(1, step + 1, 0)]
    job.push(0, gradient(0, 0))
    assert answered(job.take()) == [(0, 1, 50)]


def test_staleness_is_the_number_of_updates_by_others_since_the_ranks_last_answer():
    """K = inf, a random order of pushes: every answer is immediate, so a gradient's staleness is the count of
    the other ranks' pushes between this rank's previous push (or the start) and this one."""
    world = 4
    job = Job(world, groups=sgd(0.01), staleness=INFINITE)
    job.start(values(4))
    order = np.random.default_rng(5).choice(world, size=60, p=[0.4, 0.3, 0.2, 0.1])
    pushes_since = collections.Counter()  # rank -> others' pushes since its last one
    expected = collections.Counter()
    for rank in order.tolist():
        job.push(rank, gradient(rank, job.clock[rank]))
        ((who, header, *_),) = job.take()
        assert who == rank and header["staleness"] == pushes_since[rank], (rank, header)
        expected[pushes_since[rank]] += 1
        pushes_since[rank] = 0
        for other in range(world):
            if other != rank:
                pushes_since[other] += 1
    assert job.shard.staleness_counts == expected and len(expected) > 4


def test_ranks_in_step_see_staleness_n_minus_one_after_the_first_round():
    world = 3
    job = Job(world, groups=sgd(0.01), staleness=1)
    job.start(values(6))
    for push in range(5 * world):
        job.push(push % world, gradient(push % world, push // world))
        ((_, header, *_),) = job.take()
        assert header["staleness"] == min(push, world - 1), push


@pytest.mark.parametrize("damping", [True, False], ids=["damped", "undamped"])
def test_the_step_is_lr_times_min_1_n_over_staleness_plus_1_times_the_gradient_over_n(damping):
    world, lr = 2, 0.5
    job = Job(world, groups=sgd(lr), staleness=INFINITE, damping=damping)
    start = values(7)
    job.start(start)
    before = start.astype(np.float64)
    factors = set()
    for rank in [0, 0, 0, 1, 0, 1, 1, 0, 0, 1]:
        g = gradient(rank, job.clock[rank]) / np.float32(100)
        job.push(rank, g)
        ((_, header, payload, _),) = job.take()
        after = np.frombuffer(payload, np.float32).astype(np.float64)
        factor = min(1.0, world / (header["staleness"] + 1)) if damping else 1.0
        factors.add(factor)
        np.testing.assert_allclose(before - after, lr * factor * g.astype(np.float64) / world, rtol=1e-4, atol=1e-6)
        before = after
    assert job.shard.staleness_counts == {0: 5, 1: 2, 2: 2, 3: 1}  # this order's stalenesses, both runs
    assert factors == ({1.0, 2 / 3, 0.5} if damping else {1.0})


# -- the start, ranks that go and come ---------------------------------------------------------------------

def test_no_answer_before_every_rank_registered_and_the_start_is_rank_zeros_values():
    job = Job(3, groups=sgd(0.1), staleness=2)
    job.serve(2)
    job.serve(1, values(8))  # not rank 0's: the start is rank 0's whoever registers first
    assert job.take() == []
    job.serve(0, values(9))
    answers = job.take()
    assert ranks_answered(answers) == [0, 1, 2]
    assert {payload for *_, payload, _ in answers} == {values(9).tobytes()}
    assert [header["clock"] for _, header, *_ in answers] == [0, 0, 0]


def test_a_registered_rank_pulls_the_current_values_at_once_keeping_its_clock():
    job = Job(2, groups=sgd(0.1), staleness=INFINITE)
    job.start(values(10))
    job.push(0, gradient(0, 0))
    (_, _, pushed, _), = job.take()
    job.serve(1)
    assert [(rank, header["clock"], header["version"], payload) for rank, header, payload, _ in job.take()] == \
        [(1, 0, 1, pushed)]


def test_a_dropped_slowest_rank_releases_the_held_ones():
    job = Job(3, groups=sgd(0.1), staleness=1)
    job.start(values(11))
    job.push(1, gradient(1, 0))
    job.push(0, gradient(0, 0))
    job.push(0, gradient(0, 1))  # 2 ahead of rank 2
    job.push(1, gradient(1, 1))
    assert answered(job.take()) == [(1, 1, 0), (0, 1, 1)]
    assert job.shard.drop(2) is True
    assert answered(job.take()) == [(0, 2, 0), (1, 2, 2)]
    assert job.shard.drop(2) is False and job.take() == []
    with pytest.raises(ProtocolError, match="rank 2: pushed to served shard 0 of model 0 without being registered "
                                            "with it .*dropped when its connection was lost"):
        job.push(2, gradient(2, 0))


def test_a_k0_round_completes_without_a_dropped_rank_but_with_its_gradient_already_pushed():
    world, start = 3, values(12)
    job = Job(world, groups=sgd(0.1, 0.9))
    job.start(start)
    oracle = Oracle(distrain.optim.SGD, start, [[0, SIZE, 0]], sgd(0.1, 0.9))
    job.push(0, gradient(0, 0))
    job.push(2, gradient(2, 0))
    job.shard.drop(2)  # its gradient is in: the round is ranks 0, 1, 2's
    assert job.take() == []
    job.push(1, gradient(1, 0))
    oracle.step(rank_order_mean([gradient(rank, 0) for rank in range(3)]))
    assert [(rank, payload) for rank, _, payload, _ in job.take()] == [(0, oracle.values().tobytes()),
                                                                       (1, oracle.values().tobytes())]
    job.push(1, gradient(1, 1))
    assert job.take() == []
    job.shard.drop(0)  # rank 0 gone before pushing: the round is rank 1's alone
    oracle.step(rank_order_mean([gradient(1, 1)]))
    assert [(rank, payload) for rank, _, payload, _ in job.take()] == [(1, oracle.values().tobytes())]


def test_a_rank_registering_after_the_start_joins_at_the_slowest_live_ranks_clock():
    job = Job(3, groups=sgd(0.1), staleness=INFINITE)
    job.start(values(13))
    for rank, steps in ((0, 5), (1, 3), (2, 1)):
        for step in range(steps):
            job.push(rank, gradient(rank, step))
    job.take()
    job.shard.drop(2)
    job.serve(2, values(14))  # a restarted rank 2 (its values are not the start: the shard has its own)
    ((rank, header, payload, _),) = job.take()
    assert (rank, header["clock"], header["version"]) == (2, 3, 9)
    assert payload == job.shard.values.tobytes() != values(14).tobytes()
    with pytest.raises(ProtocolError, match=r"rank 2: pushed its gradient number 1 to served shard 0 of model 0, "
                                            r"which expects number 3 from it: a lost or repeated push"):
        job.push(2, gradient(2, 1), clock=1)
    job.push(2, gradient(2, 3), clock=3)
    assert answered(job.take()) == [(2, 4, 0)]


def test_a_rank_rejoining_a_k0_job_takes_part_in_the_current_round():
    world, start = 3, values(15)
    job = Job(world, groups=sgd(0.1))
    job.start(start)
    oracle = Oracle(distrain.optim.SGD, start, [[0, SIZE, 0]], sgd(0.1))
    job.shard.drop(2)
    for rank in (0, 1):
        job.push(rank, gradient(rank, 0))
    oracle.step(rank_order_mean([gradient(0, 0), gradient(1, 0)]))
    assert ranks_answered(job.take()) == [0, 1]
    job.push(0, gradient(0, 1))
    job.serve(2)  # round 1 has rank 0's gradient: rank 2 joins at clock 1 and the round waits for it too
    ((_, header, payload, _),) = job.take()
    assert header["clock"] == 1 and payload == oracle.values().tobytes()
    job.push(1, gradient(1, 1))
    assert job.take() == []
    job.push(2, gradient(2, 1), clock=1)
    oracle.step(rank_order_mean([gradient(rank, 1) for rank in range(3)]))
    answers = job.take()
    assert ranks_answered(answers) == [0, 1, 2] and {a[2] for a in answers} == {oracle.values().tobytes()}


def test_an_answer_is_a_snapshot_that_later_updates_do_not_change():
    job = Job(2, groups=sgd(0.1), staleness=INFINITE)
    job.start(values(16))
    job.push(0, gradient(0, 0))
    job.serve(1)  # a pull of the same version: the same copy
    (_, first, first_bytes, first_array), (_, pull, _, pull_array) = job.take()
    assert first["version"] == pull["version"] == 1 and first_array is pull_array
    assert first_array is not job.shard.values and not np.shares_memory(first_array, job.shard.values)
    for step in range(1, 4):
        job.push(0, gradient(0, step))
    assert first_array.tobytes() == first_bytes != job.shard.values.tobytes()


# -- timeouts -----------------------------------------------------------------------------------------

def expired(job, after=100.0, limit=5.0):
    job.shard.expire(time.monotonic() + after, lambda rank: limit)
    return job.take()


def test_expire_names_the_ranks_behind_a_held_rank():
    job = Job(3, groups=sgd(0.1), staleness=1)
    job.start(values(17))
    job.push(0, gradient(0, 0))
    job.push(1, gradient(1, 0))
    job.push(0, gradient(0, 1))
    job.take()
    assert expired(job, after=0.0) == []  # not yet past its timeout
    ((rank, header, payload, _),) = expired(job)
    assert rank == 0 and header["timed_out"] == 5.0 and header["op"] == "push" and payload == b""
    assert ("served shard 0 of model 0: rank 0 waited 5 s: this rank is at step 2, rank(s) [2] at step 0, and the "
            "bound is 1 steps") in header["error"]
    assert job.shard.waiting == {}


def test_expire_before_the_start_names_the_ranks_never_registered():
    job = Job(4, groups=sgd(0.1))
    job.serve(0, values(18))
    job.serve(2)
    answers = expired(job)
    assert ranks_answered(answers) == [0, 2]
    assert all("rank(s) [1, 3] never registered" in header["error"] and header["op"] == "serve"
               for _, header, *_ in answers)


def test_expire_of_a_k0_round_names_the_ranks_that_never_pushed():
    job = Job(3, groups=sgd(0.1))
    job.start(values(19))
    job.push(1, gradient(1, 0))
    ((rank, header, *_),) = expired(job)
    assert rank == 1 and "this step needs every live rank's gradient, and rank(s) [0, 2] never pushed" in \
        header["error"]


# -- what a served shard refuses ---------------------------------------------------------------------------

@pytest.mark.parametrize("change, first, second", [
    ({"model": "another-digest"}, "model='model-digest'", "model='another-digest'"),
    ({"optimizer": "Adam", "groups": adam(0.1)}, "optimizer='SGD'", "optimizer='Adam'"),
    ({"staleness": 2}, "staleness=0", "staleness=2"),
    ({"damping": True}, "damping=False", "damping=True"),
    ({"runs": [[0, 4, 0], [4, SIZE, 1]], "groups": sgd(0.1) * 2}, "runs=[[0, 12, 0]]", "runs=[[0, 4, 0], [4, 12, 1]]"),
])
def test_ranks_serving_different_models_or_optimizers_are_refused_naming_both(change, first, second):
    job = Job(2, groups=sgd(0.1))
    job.serve(0, values(20))
    with pytest.raises(ProtocolError) as refused:
        job.serve(1, **change)
    message = str(refused.value)
    assert message.startswith("rank 1: served shard 0 of model 0 was served as ")
    assert message.endswith("every rank must build the same model and optimizer")
    assert message.index(first) < message.index("but this rank serves it as") < message.index(second), message
    assert job.shard.live == {0}


def test_a_changed_learning_rate_is_not_a_different_optimizer():
    job = Job(2, groups=sgd(0.1))
    job.serve(0, values(21))
    job.serve(1, groups=sgd(0.05))  # a rank registering later says today's scheduled learning rate
    assert ranks_answered(job.take()) == [0, 1]


def test_bad_pushes_are_refused_naming_the_problem_and_change_nothing():
    job = Job(2, groups=sgd(0.1), staleness=1)
    with pytest.raises(ProtocolError, match="rank 1: pushed to served shard 0 of model 0 without being registered"):
        job.push(1, gradient(1, 0))
    job.start(values(22))
    refusals = [
        (dict(clock=1), "rank 1: pushed its gradient number 1 to served shard 0 of model 0, which expects number 0"),
        (dict(dtype="float64"), r"rank 1: pushed float64 \[12\] to served shard 0 of model 0, which holds float32 "
                                r"\[12\]"),
        (dict(shape=[13]), r"rank 1: pushed float32 \[13\] .* which holds float32 \[12\]"),
        (dict(groups=sgd(-0.1)), "rank 1: push to served shard 0 of model 0: Invalid learning rate: -0.1"),
        (dict(groups=sgd(float("nan"))), "hyperparameter 'lr' of param group 0 is nan"),
        (dict(groups=[{**sgd(0.1)[0], "momentum": ["a", "b"]}]), "hyperparameter 'momentum' of param group 0 is a "
                                                                 "list of \\['a', 'b'\\]; only short lists of numbers"),
        (dict(groups=[{"lr": 0.1}]), r"param group 0 must name exactly the hyperparameters \['dampening', 'lr', "),
    ]
    for arguments, match in refusals:
        with pytest.raises(ProtocolError, match=match):
            job.push(1, gradient(1, 0), **arguments)
    with pytest.raises(ProtocolError, match=r"push: payload has 44 bytes, but float32 \[12\] needs 48"):
        job.shard.push(job._numbered(1, {"op": "push", "table": 0, "shard": 0, "clock": 0, "dtype": "float32",
                                         "shape": [SIZE], "groups": sgd(0.1)}), [b"\0" * 44], identity(1))
    assert job.shard.version == 0 and job.shard.clock[1] == 0 and job.take() == []
    assert job.shard.optimizer.param_groups[0]["lr"] == 0.1
    job.push(1, gradient(1, 0))
    job.push(1, gradient(1, 1))  # two steps ahead of rank 0: held back
    assert answered(job.take()) == [(1, 1, 0)]
    with pytest.raises(ProtocolError, match="rank 1: served shard 0 of model 0: pushed again before its last push "
                                            "was answered"):
        job.push(1, gradient(1, 2))


def header_with(**changes):
    return {"op": "serve", "rank": 0, "seq": 0, "table": 3, "shard": 1, "model": "m", "dtype": "float32",
            "shape": [SIZE], "optimizer": "SGD", "groups": sgd(0.1), "runs": [[0, SIZE, 0]], "staleness": 0,
            "damping": False, **changes}


@pytest.mark.parametrize("changes, match", [
    (dict(optimizer="LBFGS"), r"optimizer 'LBFGS' cannot be served; one of \['Adadelta', 'Adagrad', 'Adam', "),
    (dict(optimizer="os.system"), "optimizer 'os.system' cannot be served"),
    (dict(optimizer="Optimizer"), "optimizer 'Optimizer' cannot be served"),
    (dict(groups=sgd(-0.1)), "optimizer SGD: Invalid learning rate: -0.1 .*lr must be >= 0"),
    (dict(groups=sgd(float("nan"))), "optimizer SGD: hyperparameter 'lr' of param group 0 is nan"),
    (dict(groups=sgd(float("inf"))), "hyperparameter 'lr' of param group 0 is inf"),
    (dict(groups=[{**sgd(0.1)[0], "lr": ["0.1", "x"]}]), "hyperparameter 'lr' of param group 0 is a list of"),
    (dict(groups=[{**sgd(0.1)[0], "lr": {"a": 1}}]), "hyperparameter 'lr' of param group 0 is dict"),
    (dict(groups=[{**sgd(0.1)[0], "lr": "0.1"}]), "hyperparameter 'lr' of param group 0 must be a number"),
    (dict(groups=[{**sgd(0.1)[0], "nesterov": "yes"}]), "hyperparameter 'nesterov' of param group 0 must be a "
                                                        "number"),
    (dict(groups=[{**sgd(0.1)[0], "extra": 1}]), "param group 0 must name exactly the hyperparameters"),
    (dict(groups=[]), r"run \[0, 12, 0\] does not continue at element 0 with one of the 0 param groups"),
    (dict(optimizer="Adam", groups=[{**adam(0.1)[0], "betas": [0.9]}]),
     r"hyperparameter 'betas' of param group 0 must be 2 numbers \(as \(0\.9, 0\.999\)\), got \[0\.9\]"),
    (dict(runs=[[0, 10, 0]]), "served shard 1 of model 3: the runs cover 10 elements, the shard has 12"),
    (dict(runs=[[0, 5, 0], [6, SIZE, 0]]), r"run \[6, 12, 0\] does not continue at element 5"),
    (dict(runs=[[0, SIZE, 1]]), r"run \[0, 12, 1\] does not continue at element 0 with one of the 1 param groups"),
    (dict(runs=[[0, SIZE, -1]]), "with one of the 1 param groups"),
    (dict(runs=[[0, SIZE]]), r"a run must be \[start, stop, group\], got \[0, 12\]"),
    (dict(runs=[]), r"runs must be a list of 1\.\.256"),
    (dict(shape=[3, 4]), r"a served shard is 1-D, got shape \[3, 4\]"),
    (dict(staleness=-2), r"staleness must be >= 0 \(or -1 for unbounded\), got -2"),
])
def test_a_shard_that_cannot_be_served_is_refused_naming_the_problem(changes, match):
    with pytest.raises(ProtocolError, match=match):
        ServedShard(header_with(**changes), 2, lambda *answer: pytest.fail(f"answered {answer}"))


def test_every_servable_optimizer_is_built_from_its_own_description():
    parameter = nn.Parameter(distrain.tensor(np.zeros(SIZE, np.float32)))
    for name, cls in served_optimizer.servable().items():
        groups = served_optimizer.hyperparameters(cls([parameter], lr=0.25))
        shard = ServedShard(header_with(optimizer=name, groups=groups), 1, lambda *answer: None)
        assert type(shard.optimizer) is cls and shard.optimizer.param_groups[0]["lr"] == 0.25
        assert {key: value for key, value in shard.optimizer.param_groups[0].items() if key != "params"} == \
            {key: tuple(value) if isinstance(value, list) else value for key, value in groups[0].items()}


def test_the_rank_side_description_names_what_cannot_be_served():
    model = nn.Linear(3, 2)
    flats = pack_parameters(list(model.parameters()))
    with pytest.raises(distrain.DistrainError, match=r"which can run Adadelta, .*SGD; got LBFGS"):
        served_optimizer.describe(distrain.optim.LBFGS(model.parameters()), flats)
    name, groups, group_of = served_optimizer.describe(distrain.optim.SGD(model.parameters(), lr=0.5), flats)
    assert name == "SGD" and groups == [sgd(0.5)[0]] and sorted(group_of.values()) == [0, 0]


def test_a_shard_larger_than_the_servers_message_limit_is_refused_before_anything_is_allocated():
    """A shard travels whole in one push, so none may be larger than one message: a serve naming 2**40 elements
    (4 TiB) from an authenticated rank is refused instead of reserving the memory."""
    header = {"table": 0, "shard": 0, "model": "m", "dtype": "float32", "shape": [2 ** 40], "optimizer": "",
              "groups": [], "runs": [], "staleness": 0, "damping": False}
    with pytest.raises(ProtocolError, match=r"1099511627776 float32 elements are more than this server's message "
                                            r"limit of 1048576 bytes"):
        ServedShard(header, 2, lambda *answer: None, max_bytes=2 ** 20)
    header["shape"] = [2 ** 18]  # exactly the limit: served
    assert ServedShard(header, 2, lambda *answer: None, max_bytes=2 ** 20).values.nbytes == 2 ** 20
