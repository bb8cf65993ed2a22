"""Learning-rate schedulers: 100 steps give exactly torch.optim.lr_scheduler's lrs, and state dicts resume them."""
import copy

import pytest
import torch

import distrain

OptimizerError = distrain.optim.OptimizerError

SCHEDULERS = [
    ("StepLR", {"step_size": 7, "gamma": 0.5}),
    ("MultiStepLR", {"milestones": [10, 25, 25, 60], "gamma": 0.3}),
    ("ExponentialLR", {"gamma": 0.97}),
    ("CosineAnnealingLR", {"T_max": 30}),
    ("CosineAnnealingLR", {"T_max": 40, "eta_min": 0.001}),
    ("LambdaLR", {"lr_lambda": lambda epoch: 1.0 / (1 + epoch) ** 0.5}),
    ("LinearLR", {}),
    ("LinearLR", {"start_factor": 0.1, "end_factor": 0.8, "total_iters": 20}),
]
IDS = [f"{name}-{'-'.join(k + '=' + str(v) for k, v in kwargs.items() if k != 'lr_lambda')}"
       for name, kwargs in SCHEDULERS]


def optimizers():
    """An SGD with two param groups (lr 0.1 and 0.02) in each library."""
    ours = distrain.optim.SGD([{"params": [distrain.randn(2, requires_grad=True)]},
                               {"params": [distrain.randn(2, requires_grad=True)], "lr": 0.02}], lr=0.1, momentum=0.9)
    theirs = torch.optim.SGD([{"params": [torch.randn(2, requires_grad=True)]},
                              {"params": [torch.randn(2, requires_grad=True)], "lr": 0.02}], lr=0.1, momentum=0.9)
    return ours, theirs


def lr_sequence(scheduler, optimizer, steps):
    lrs = [scheduler.get_last_lr()]
    for _ in range(steps):
        optimizer.step()  # no gradients: nothing to update, but the order torch expects
        scheduler.step()
        lrs.append(scheduler.get_last_lr())
        assert [group["lr"] for group in optimizer.param_groups] == lrs[-1]
    return lrs


@pytest.mark.parametrize("name, kwargs", SCHEDULERS, ids=IDS)
def test_100_steps_match_torch_exactly(name, kwargs):
    ours, theirs = optimizers()
    our_lrs = lr_sequence(getattr(distrain.optim.lr_scheduler, name)(ours, **kwargs), ours, 100)
    their_lrs = lr_sequence(getattr(torch.optim.lr_scheduler, name)(theirs, **kwargs), theirs, 100)
    assert our_lrs == their_lrs
    assert ours.param_groups[0]["initial_lr"] == 0.1 and ours.param_groups[1]["initial_lr"] == 0.02


@pytest.mark.parametrize("name, kwargs", SCHEDULERS, ids=IDS)
def test_state_dict_resumes_the_schedule(name, kwargs):
    optimizer, _ = optimizers()
    scheduler = getattr(distrain.optim.lr_scheduler, name)(optimizer, **kwargs)
    lr_sequence(scheduler, optimizer, 33)
    saved = copy.deepcopy((optimizer.state_dict(), scheduler.state_dict()))
    expected = lr_sequence(scheduler, optimizer, 40)

    resumed_optimizer, _ = optimizers()
    resumed = getattr(distrain.optim.lr_scheduler, name)(resumed_optimizer, **kwargs)
    resumed_optimizer.load_state_dict(saved[0])
    resumed.load_state_dict(saved[1])
    assert resumed.last_epoch == 33
    assert lr_sequence(resumed, resumed_optimizer, 40) == expected


@pytest.mark.parametrize("name, kwargs", SCHEDULERS[:4], ids=IDS[:4])
def test_state_dict_has_torchs_keys(name, kwargs):
    ours, theirs = optimizers()
    our_state = getattr(distrain.optim.lr_scheduler, name)(ours, **kwargs).state_dict()
    their_state = getattr(torch.optim.lr_scheduler, name)(theirs, **kwargs).state_dict()
    assert set(our_state) == set(their_state) - {"_get_lr_called_within_step"}
    for key in ("base_lrs", "last_epoch", "_step_count", "_last_lr"):
        assert our_state[key] == their_state[key]


def test_lambda_lr_takes_one_function_per_group_and_saves_callable_objects():
    class Warmup:
        def __init__(self, steps):
            self.steps = steps

        def __call__(self, epoch):
            return min(1.0, (epoch + 1) / self.steps)

    optimizer, _ = optimizers()
    scheduler = distrain.optim.lr_scheduler.LambdaLR(optimizer, [Warmup(4), lambda epoch: 0.5 ** epoch])
    lr_sequence(scheduler, optimizer, 2)
    assert scheduler.get_last_lr() == [0.1 * 0.75, 0.02 * 0.25]
    state = scheduler.state_dict()
    assert state["lr_lambdas"] == [{"steps": 4}, None]
    state["lr_lambdas"][0]["steps"] = 8
    scheduler.load_state_dict(state)
    assert scheduler.lr_lambdas[0].steps == 8
    with pytest.raises(OptimizerError, match="LambdaLR got 3 lr_lambdas for 2 param groups"):
        distrain.optim.lr_scheduler.LambdaLR(optimizer, [Warmup(1)] * 3)


def test_bad_scheduler_input_raises():
    optimizer, _ = optimizers()
    with pytest.raises(OptimizerError, match="param group 0 has no 'initial_lr'.*last_epoch=5"):
        distrain.optim.lr_scheduler.StepLR(optimizer, step_size=3, last_epoch=5)
    with pytest.raises(OptimizerError, match="start_factor must be in"):
        distrain.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.0)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        distrain.optim.lr_scheduler.ExponentialLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)]), gamma=0.9)
