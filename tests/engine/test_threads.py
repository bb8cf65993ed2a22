"""The engine's thread setting and pool: validation, error propagation, and thread-count-independent results."""
import numpy as np
import pytest

import distrain


@pytest.fixture
def restore_threads():
    before = distrain.get_num_threads()
    yield
    distrain.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_set_num_threads_rejects_non_positive_ints(bad, restore_threads):
    with pytest.raises(ValueError, match="positive int"):
        distrain.set_num_threads(bad)


def test_run_in_parallel_calls_every_part_and_reraises_a_worker_error(restore_threads):
    from distrain.engine.threads import run_in_parallel

    distrain.set_num_threads(3)
    seen = []
    run_in_parallel(lambda index, part: seen.append((index, part)), ["a", "b", "c"])
    assert sorted(seen) == [(0, "a"), (1, "b"), (2, "c")]

    def fail_on_the_second(index, part):
        if index == 1:
            raise RuntimeError("part 1 failed")

    with pytest.raises(RuntimeError, match="part 1 failed"):
        run_in_parallel(fail_on_the_second, ["a", "b"])


@pytest.mark.parametrize("optimizer", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_optimizer_steps_are_identical_on_one_and_several_threads(optimizer, restore_threads):
    """Big enough (1.2M parameters) for the threaded path to split the buffer into many blocks."""
    results = []
    for count in (1, 3):
        distrain.set_num_threads(count)
        rng = np.random.default_rng(0)
        params = [distrain.nn.Parameter(distrain.tensor(rng.standard_normal(shape).astype(np.float32)))
                  for shape in ((600, 1000), (1000,), (600, 1000))]
        kwargs = {"lr": 0.01, "momentum": 0.9} if optimizer in ("SGD", "RMSprop") else {"lr": 0.01}
        opt = getattr(distrain.optim, optimizer)(params, **kwargs)
        for step in range(3):
            for p in params:
                p.grad = distrain.tensor(rng.standard_normal(tuple(p.shape)).astype(np.float32))
            opt.step()
        results.append(np.concatenate([p.detach().numpy().ravel() for p in params]))
    np.testing.assert_array_equal(results[0], results[1])
    assert not np.array_equal(results[0][:10], np.zeros(10))
