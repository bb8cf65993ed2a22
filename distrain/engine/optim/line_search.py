"""The strong-Wolfe line search that LBFGS(line_search_fn="strong_wolfe") runs along a direction.

The algorithm is the one PyTorch's LBFGS uses (after minFunc, and Nocedal & Wright's
Algorithm 3.5/3.6): first grow the step until an interval is known to contain a point
satisfying the strong Wolfe conditions (the "bracket"), then shrink that interval by
safeguarded cubic interpolation until a point satisfies them. Same tests in the same
order, so the steps (and the trajectories) are PyTorch's.

Losses are Python floats; gradients are 1-D xp arrays (numpy or cupy); directional
derivatives, and the step sizes made from them, are scalars of the gradients' dtype (as
PyTorch's 0-d tensors are), so float32 tests round as PyTorch's do.
"""
from __future__ import annotations


def cubic_minimum(x1, f1, g1, x2, f2, g2, bounds=None):
    """The minimiser of the cubic through (x1, f1, slope g1) and (x2, f2, slope g2), clipped to `bounds`.

    Without bounds the interval between x1 and x2 is used; with no real minimiser the middle of the bounds.
    """
    low, high = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 ** 2 - g1 * g2
    if d2_square < 0:
        return (low + high) / 2.0
    d2 = d2_square ** 0.5
    if x1 <= x2:
        position = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        position = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(position, low), high)


class _Point:
    """One evaluated step size: t, the loss there, the gradient there and its slope along the direction."""

    __slots__ = ("grad", "loss", "slope", "t")

    def __init__(self, t, loss, grad, slope):
        self.t, self.loss, self.grad, self.slope = t, loss, grad, slope


def strong_wolfe(evaluate, direction, t, loss, grad, slope, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """Search along `direction` from the current point; returns (loss, grad, t, evaluations).

    Args:
        evaluate: t -> (loss, gradient array) at the parameters moved by t * direction
            (it leaves the parameters where they were); each call returns a new array, so
            points are kept without copies.
        direction: the 1-D search direction (a descent direction: `slope` < 0).
        t: the first step size to try.
        loss, grad, slope: the loss, gradient and directional derivative at t = 0.
        c1, c2: the sufficient-decrease and curvature constants of the Wolfe conditions.
        max_ls: the most evaluations to spend.
    """
    xp_dot = _dot_with(direction)
    direction_norm = abs(direction).max()
    start = _Point(0, loss, grad, slope)
    new = _Point(t, *_evaluated(evaluate, t, xp_dot))
    evaluations, iterations = 1, 0
    previous, bracket, done = start, None, False

    def sufficient_decrease_fails(point):
        return point.loss > loss + c1 * point.t * slope

    # Phase 1: find an interval that contains an acceptable step.
    while iterations < max_ls:
        if sufficient_decrease_fails(new) or (iterations > 1 and new.loss >= previous.loss):
            bracket = [previous, new]
            break
        if abs(new.slope) <= -c2 * slope:
            bracket, done = [new], True
            break
        if new.slope >= 0:
            bracket = [previous, new]
            break
        # extrapolate: a cubic step, at least 1% beyond t and at most 10 t
        t_next = cubic_minimum(previous.t, previous.loss, previous.slope, new.t, new.loss, new.slope,
                               bounds=(new.t + 0.01 * (new.t - previous.t), new.t * 10))
        previous = new
        new = _Point(t_next, *_evaluated(evaluate, t_next, xp_dot))
        evaluations += 1
        iterations += 1
    if iterations == max_ls:
        bracket = [start, new]

    # Phase 2: zoom into the bracket until a point satisfies both conditions.
    insufficient_progress = False
    low, high = (0, 1) if bracket[0].loss <= bracket[-1].loss else (1, 0)
    while not done and iterations < max_ls:
        if abs(bracket[1].t - bracket[0].t) * direction_norm < tolerance_change:
            break
        t = cubic_minimum(bracket[0].t, bracket[0].loss, bracket[0].slope,
                          bracket[1].t, bracket[1].loss, bracket[1].slope)
        top, bottom = max(bracket[0].t, bracket[1].t), min(bracket[0].t, bracket[1].t)
        # keep away from the ends: a point within 10% of an end twice in a row is pushed inside
        margin = 0.1 * (top - bottom)
        if min(top - t, t - bottom) < margin:
            if insufficient_progress or t >= top or t <= bottom:
                t = top - margin if abs(t - top) < abs(t - bottom) else bottom + margin
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False
        new = _Point(t, *_evaluated(evaluate, t, xp_dot))
        evaluations += 1
        iterations += 1
        if sufficient_decrease_fails(new) or new.loss >= bracket[low].loss:
            bracket[high] = new
            low, high = (0, 1) if bracket[0].loss <= bracket[1].loss else (1, 0)
        else:
            if abs(new.slope) <= -c2 * slope:
                done = True
            elif new.slope * (bracket[high].t - bracket[low].t) >= 0:
                bracket[high] = bracket[low]
            bracket[low] = new
    best = bracket[low]
    return best.loss, best.grad, best.t, evaluations


def _dot_with(direction):
    return lambda array: array.dot(direction)


def _evaluated(evaluate, t, dot):
    loss, grad = evaluate(t)
    return loss, grad, dot(grad)
