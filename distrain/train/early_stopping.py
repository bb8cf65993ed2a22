"""Early stopping: stop after `patience` evaluations without an improvement of the monitored metric."""
from __future__ import annotations


class EarlyStopping:
    """Tracks the best value of "accuracy" (higher is better) or "loss" (lower is better).

    `update(accuracy, loss)` after each evaluation returns True when the run should stop.
    Its state (the best value, evaluations since, whether it stopped) goes into checkpoints,
    so a resumed run counts on where it was, and a run that stopped stays stopped.
    """

    def __init__(self, metric="accuracy", patience=0, min_delta=0.0):
        self.metric, self.patience, self.min_delta = metric, patience, min_delta
        self.best = None
        self.since = 0
        self.stopped = False

    def update(self, accuracy, loss) -> bool:
        if not self.patience:
            return False
        value = accuracy if self.metric == "accuracy" else -loss  # higher is better, either way
        if self.best is None or value > self.best + self.min_delta:
            self.best, self.since = value, 0
            return False
        self.since += 1
        self.stopped = self.since >= self.patience
        return self.stopped

    def state_dict(self) -> dict:
        return {"best": self.best, "since": self.since, "stopped": self.stopped}

    def load_state_dict(self, state):
        self.best, self.since, self.stopped = state["best"], state["since"], state.get("stopped", False)
