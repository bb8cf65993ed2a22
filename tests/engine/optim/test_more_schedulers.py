"""The cycling, plateau, polynomial and composite schedulers give exactly torch.optim.lr_scheduler's lrs.

Each runs many steps beside its PyTorch twin on an optimizer with two param groups; the
lrs (and, where a scheduler cycles it, the momentum or beta1) must be equal to the last
bit, also after a state-dict round trip in the middle of the schedule.
"""
import copy
import warnings

import pytest
import torch

import distrain

OptimizerError = distrain.optim.OptimizerError


def optimizers(name="SGD"):
    """The same optimizer with two param groups (lr 0.1 and 0.02) in each library."""
    kwargs = {"momentum": 0.9} if name == "SGD" else {}
    pair = []
    for lib in (distrain, torch):
        groups = [{"params": [lib.randn(2, requires_grad=True)]},
                  {"params": [lib.randn(2, requires_grad=True)], "lr": 0.02}]
        pair.append(getattr(lib.optim, name)(groups, lr=0.1, **kwargs))
    return pair


def momenta(optimizer):
    return [group["betas"][0] if "betas" in group else group.get("momentum") for group in optimizer.param_groups]


def run(scheduler, optimizer, steps, metrics=None):
    """[(lrs, momenta)] after construction and after each of `steps` steps (step(metric) with metrics)."""
    values = [(scheduler.get_last_lr(), momenta(optimizer))]
    for index in range(steps):
        optimizer.step()  # no gradients: nothing moves, but the order PyTorch expects
        scheduler.step() if metrics is None else scheduler.step(metrics[index])
        values.append((scheduler.get_last_lr(), momenta(optimizer)))
        assert [group["lr"] for group in optimizer.param_groups] == values[-1][0]
    return values


PLATEAU_METRICS = [1.0, 0.9, 0.9, 0.95, 0.91, 0.905, 0.92, 0.9, 0.8, 0.8, 0.8, 0.81, 0.85, 0.7] * 8

# (scheduler name, kwargs, optimizer, steps, metric per step or None)
SCHEDULERS = [
    ("PolynomialLR", {}, "SGD", 10, None),
    ("PolynomialLR", {"total_iters": 40, "power": 2.5}, "SGD", 60, None),
    ("CosineAnnealingWarmRestarts", {"T_0": 7}, "SGD", 60, None),
    ("CosineAnnealingWarmRestarts", {"T_0": 3, "T_mult": 2, "eta_min": 0.001}, "SGD", 60, None),
    ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 5}, "SGD", 60, None),
    ("CyclicLR", {"base_lr": [0.01, 0.002], "max_lr": 0.1, "step_size_up": 4, "step_size_down": 7,
                  "mode": "triangular2"}, "SGD", 60, None),
    ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 6, "mode": "exp_range", "gamma": 0.97,
                  "base_momentum": 0.7, "max_momentum": [0.95, 0.9]}, "Adam", 60, None),
    ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 3, "cycle_momentum": False}, "Adagrad", 30, None),
    ("OneCycleLR", {"max_lr": 0.5, "total_steps": 50}, "SGD", 50, None),
    ("OneCycleLR", {"max_lr": [0.5, 0.1], "epochs": 6, "steps_per_epoch": 9, "pct_start": 0.25,
                    "anneal_strategy": "linear", "div_factor": 10.0, "final_div_factor": 100.0}, "Adam", 54, None),
    ("OneCycleLR", {"max_lr": 0.3, "total_steps": 60, "three_phase": True, "base_momentum": 0.8}, "SGD", 60, None),
    ("OneCycleLR", {"max_lr": 0.3, "total_steps": 40, "cycle_momentum": False}, "RMSprop", 40, None),
    ("ReduceLROnPlateau", {}, "SGD", 112, PLATEAU_METRICS),
    ("ReduceLROnPlateau", {"mode": "max", "factor": 0.5, "patience": 2, "threshold": 0.01, "threshold_mode": "abs",
                           "cooldown": 3, "min_lr": [0.01, 0.0001], "eps": 1e-4}, "SGD", 112,
     [-value for value in PLATEAU_METRICS]),
    ("ReduceLROnPlateau", {"factor": 0.3, "patience": 1, "cooldown": 1, "min_lr": 0.005}, "Adam", 112,
     PLATEAU_METRICS),
]
IDS = [f"{name}-{'-'.join(k + '=' + str(v) for k, v in kwargs.items())}" for name, kwargs, *_ in SCHEDULERS]


def build(lib, name, optimizer, kwargs):
    return getattr(lib.optim.lr_scheduler, name)(optimizer, **kwargs)


@pytest.mark.parametrize("name, kwargs, optimizer_name, steps, metrics", SCHEDULERS, ids=IDS)
def test_lrs_and_momenta_match_torch_exactly(name, kwargs, optimizer_name, steps, metrics):
    ours, theirs = optimizers(optimizer_name)
    expected = run(build(torch, name, theirs, kwargs), theirs, steps, metrics)
    assert run(build(distrain, name, ours, kwargs), ours, steps, metrics) == expected
    assert len({tuple(lrs) for lrs, _ in expected}) > 2  # the schedule moved


@pytest.mark.parametrize("name, kwargs, optimizer_name, steps, metrics", SCHEDULERS, ids=IDS)
def test_state_dict_resumes_the_schedule(name, kwargs, optimizer_name, steps, metrics):
    half = steps // 2
    optimizer, _ = optimizers(optimizer_name)
    scheduler = build(distrain, name, optimizer, kwargs)
    run(scheduler, optimizer, half, metrics)
    saved = copy.deepcopy((optimizer.state_dict(), scheduler.state_dict()))
    rest = None if metrics is None else metrics[half:]
    expected = run(scheduler, optimizer, steps - half, rest)

    resumed_optimizer, _ = optimizers(optimizer_name)
    resumed = build(distrain, name, resumed_optimizer, kwargs)
    resumed_optimizer.load_state_dict(saved[0])
    resumed.load_state_dict(saved[1])
    assert run(resumed, resumed_optimizer, steps - half, rest) == expected


@pytest.mark.parametrize("name, kwargs, optimizer_name, steps, metrics", SCHEDULERS[::3], ids=IDS[::3])
def test_state_dict_has_torchs_keys_and_values(name, kwargs, optimizer_name, steps, metrics):
    ours, theirs = optimizers(optimizer_name)
    states = []
    for lib, optimizer in ((distrain, ours), (torch, theirs)):
        scheduler = build(lib, name, optimizer, kwargs)
        run(scheduler, optimizer, 5, metrics)
        states.append(scheduler.state_dict())
    ignored = {"_get_lr_called_within_step", "_scale_fn_ref"}
    assert set(states[0]) == set(states[1]) - ignored
    for key in set(states[0]) - {"_scale_fn_custom"}:
        assert states[0][key] == states[1][key], key


def test_cosine_warm_restarts_with_fractional_epochs_matches_torch():
    ours, theirs = optimizers()
    schedulers = [build(lib, "CosineAnnealingWarmRestarts", optimizer, {"T_0": 4, "T_mult": 2, "eta_min": 0.001})
                  for lib, optimizer in ((distrain, ours), (torch, theirs))]
    batches = 5
    for epoch in range(30):
        for batch in range(batches):
            for scheduler, optimizer in zip(schedulers, (ours, theirs)):
                optimizer.step()
                scheduler.step(epoch + batch / batches)
            assert schedulers[0].get_last_lr() == schedulers[1].get_last_lr()
            assert (schedulers[0].T_cur, schedulers[0].T_i, schedulers[0].last_epoch) == \
                (schedulers[1].T_cur, schedulers[1].T_i, schedulers[1].last_epoch)
    with pytest.raises(OptimizerError, match="epoch must be >= 0, got -1"):
        schedulers[0].step(-1)


def test_polynomial_step_with_an_epoch_uses_the_closed_form_like_torch():
    ours, theirs = optimizers()
    schedulers = [build(lib, "PolynomialLR", optimizer, {"total_iters": 20, "power": 0.5})
                  for lib, optimizer in ((distrain, ours), (torch, theirs))]
    for epoch in (3, 4, 10, 7, 25):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's deprecation warning for step(epoch)
            for scheduler in schedulers:
                scheduler.step(epoch)
        assert schedulers[0].get_last_lr() == schedulers[1].get_last_lr()


COMPOSITES = [
    ("SequentialLR", lambda lib, opt: {"schedulers": [lib.optim.lr_scheduler.LinearLR(opt, start_factor=0.1,
                                                                                       total_iters=5),
                                                      lib.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=30)],
                                       "milestones": [5]}),
    ("SequentialLR", lambda lib, opt: {"schedulers": [lib.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9),
                                                      lib.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5),
                                                      lib.optim.lr_scheduler.MultiStepLR(opt, [3, 9], gamma=0.3),
                                                      lib.optim.lr_scheduler.PolynomialLR(opt, total_iters=12)],
                                       "milestones": [6, 20, 33]}),
    ("ChainedScheduler", lambda lib, opt: {"schedulers": [lib.optim.lr_scheduler.LinearLR(opt, start_factor=0.2,
                                                                                           total_iters=6),
                                                          lib.optim.lr_scheduler.ExponentialLR(opt, gamma=0.95)]}),
    ("ChainedScheduler", lambda lib, opt: {"schedulers": [
        lib.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=5),
        lib.optim.lr_scheduler.SequentialLR(opt, [lib.optim.lr_scheduler.ExponentialLR(opt, gamma=0.8),
                                                  lib.optim.lr_scheduler.StepLR(opt, step_size=7)], milestones=[8])],
        "optimizer": opt}),
]


@pytest.mark.parametrize("name, arguments", COMPOSITES, ids=[f"{name}-{i}" for i, (name, _) in enumerate(COMPOSITES)])
def test_composite_schedulers_match_torch_and_resume(name, arguments):
    ours, theirs = optimizers()
    results = []
    for lib, optimizer in ((distrain, ours), (torch, theirs)):
        scheduler = getattr(lib.optim.lr_scheduler, name)(**({"optimizer": optimizer} if name == "SequentialLR"
                                                              else {}), **arguments(lib, optimizer))
        results.append((scheduler, run(scheduler, optimizer, 25)))
    assert results[0][1] == results[1][1]
    (scheduler, _), (reference, _) = results
    saved = copy.deepcopy((ours.state_dict(), scheduler.state_dict()))
    assert set(saved[1]) == set(reference.state_dict()) - {"_get_lr_called_within_step"}
    expected = run(reference, theirs, 25)
    assert run(scheduler, ours, 25) == expected
    resumed_optimizer, _ = optimizers()
    resumed = getattr(distrain.optim.lr_scheduler, name)(**({"optimizer": resumed_optimizer}
                                                            if name == "SequentialLR" else {}),
                                                         **arguments(distrain, resumed_optimizer))
    resumed_optimizer.load_state_dict(saved[0])
    resumed.load_state_dict(saved[1])
    assert run(resumed, resumed_optimizer, 25) == expected


@pytest.mark.parametrize("make, message", [
    (lambda opt, L: L.ReduceLROnPlateau(opt, factor=1.0), "factor must be < 1.0, got 1.0"),
    (lambda opt, L: L.ReduceLROnPlateau(opt, mode="lowest"), "mode must be 'min' or 'max', got 'lowest'"),
    (lambda opt, L: L.ReduceLROnPlateau(opt, threshold_mode="pct"), "threshold_mode must be 'rel' or 'abs'"),
    (lambda opt, L: L.ReduceLROnPlateau(opt, min_lr=[0.1]), "1 min_lr values for 2 param groups"),
    (lambda opt, L: L.OneCycleLR(opt, max_lr=0.1), "needs total_steps, or epochs and steps_per_epoch"),
    (lambda opt, L: L.OneCycleLR(opt, max_lr=0.1, total_steps=0), "total_steps must be a positive int, got 0"),
    (lambda opt, L: L.OneCycleLR(opt, max_lr=0.1, epochs=2, steps_per_epoch=-1), "steps_per_epoch must be"),
    (lambda opt, L: L.OneCycleLR(opt, max_lr=0.1, total_steps=9, pct_start=1.5), "pct_start must be a float"),
    (lambda opt, L: L.OneCycleLR(opt, max_lr=0.1, total_steps=9, anneal_strategy="cosine"), "anneal_strategy"),
    (lambda opt, L: L.OneCycleLR(opt, max_lr=[0.1] * 3, total_steps=9), "max_lr has 3 values for 2 param groups"),
    (lambda opt, L: L.CyclicLR(opt, 0.01, 0.1, mode="sawtooth"), "mode must be 'triangular'"),
    (lambda opt, L: L.CyclicLR(opt, [0.01], 0.1), "base_lr has 1 values for 2 param groups"),
    (lambda opt, L: L.CosineAnnealingWarmRestarts(opt, T_0=0), "T_0 must be a positive int, got 0"),
    (lambda opt, L: L.CosineAnnealingWarmRestarts(opt, T_0=5, T_mult=0), "T_mult must be an int >= 1"),
    (lambda opt, L: L.PolynomialLR(opt, total_iters=0), "total_iters must be a positive int"),
    (lambda opt, L: L.SequentialLR(opt, [L.StepLR(opt, 3)], milestones=[2]), "one milestone fewer than schedulers"),
    (lambda opt, L: L.SequentialLR(opt, [], milestones=[]), "at least one scheduler"),
    (lambda opt, L: L.ChainedScheduler([L.StepLR(opt, 3), L.ReduceLROnPlateau(opt)]),
     r"does not support ReduceLROnPlateau \(schedulers\[1\]\)"),
])
def test_bad_arguments_raise_naming_them(make, message):
    optimizer, _ = optimizers()
    with pytest.raises(OptimizerError, match=message):
        make(optimizer, distrain.optim.lr_scheduler)


def test_cycle_momentum_needs_a_momentum_and_one_cycle_refuses_extra_steps():
    optimizer = distrain.optim.Adagrad([distrain.randn(2, requires_grad=True)])
    with pytest.raises(OptimizerError, match="cycle_momentum needs an optimizer with a momentum or betas"):
        distrain.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=5)
    scheduler = distrain.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=3, cycle_momentum=False)
    for _ in range(3):
        scheduler.step()
    with pytest.raises(OptimizerError, match="stepped 4 times, but total_steps is 3"):
        scheduler.step()
    other, _ = optimizers()
    with pytest.raises(OptimizerError, match="same optimizer"):
        distrain.optim.lr_scheduler.SequentialLR(other, [distrain.optim.lr_scheduler.StepLR(optimizer, 2)], [])
