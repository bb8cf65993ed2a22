"""`Future`: a value that a collective will produce, as torch.futures.Future has it (distrain.futures.Future).

DDP communication hooks (distrain.comm_hooks) return one: the reducer waits on it at the
end of backward and takes its value as the bucket's reduced gradient. The methods are
PyTorch's: `wait()`, `value()`, `done()`, `then(callback)`, `add_done_callback`,
`set_result`, `set_exception`.

What runs when: distrain has no background executor for callbacks. A Future made by
`completed_when(handle, produce)` finishes when someone waits on it (or on a Future
chained from it with `then`): `wait()` waits for the communicator's handle, computes the
value and runs the callbacks, in the waiting thread. A Future finished with `set_result`
runs its callbacks at once, in the calling thread. Until it finishes, `value()` raises.

Example::

    >>> future = Future()
    >>> doubled = future.then(lambda done: done.value() * 2)
    >>> future.set_result(21)
    >>> doubled.wait()
    42
"""
from __future__ import annotations

from .errors import DistrainError


class FutureError(DistrainError, RuntimeError):
    """A Future used before it has a value, or given one twice."""


class Future:
    """A value that becomes available later; see the module docstring for when callbacks run."""

    def __init__(self, *, devices=None):
        self._done = False
        self._value = None
        self._error = None
        self._callbacks = []
        self._drive = None  # what wait() runs to finish a Future that completes only when waited on

    def done(self) -> bool:
        return self._done

    def wait(self):
        """Block until the value is there (finishing the collective behind it if need be); return it."""
        if not self._done and self._drive is not None:
            drive, self._drive = self._drive, None
            drive()
        if not self._done:
            raise FutureError("Future.wait(): nothing will complete this Future (no collective is behind it and "
                              "set_result() was not called)")
        if self._error is not None:
            raise self._error
        return self._value

    def value(self):
        """The value, once done (PyTorch's value(): it does not wait)."""
        if not self._done:
            raise FutureError("Future.value() called before the Future completed: call wait() first")
        if self._error is not None:
            raise self._error
        return self._value

    def set_result(self, result):
        if self._done:
            raise FutureError("Future.set_result(): this Future already has a value")
        self._value = result
        self._finish()

    def set_exception(self, error):
        if self._done:
            raise FutureError("Future.set_exception(): this Future already has a value")
        self._error = error
        self._finish()

    def _finish(self):
        self._done = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def add_done_callback(self, callback):
        """Run callback(self) when done (at once if done already)."""
        if self._done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def then(self, callback) -> "Future":
        """A new Future holding callback(self) once this one is done; waiting on it waits on this one."""
        chained = Future()

        def run(parent):
            try:
                chained.set_result(callback(parent))
            except Exception as error:  # noqa: BLE001 -- the chained Future carries the callback's error
                chained.set_exception(error)

        chained._drive = self.wait if not self._done else None
        self.add_done_callback(run)
        return chained


def completed_when(handle, produce) -> Future:
    """A Future whose value is produce(), computed once the communicator's `handle` has completed."""
    future = Future()

    def drive():
        try:
            handle.wait()
            future.set_result(produce())
        except Exception as error:  # noqa: BLE001 -- the Future carries the collective's error to whoever waits
            future.set_exception(error)

    future._drive = drive
    return future


def completed(value) -> Future:
    """A Future that already holds `value`."""
    future = Future()
    future.set_result(value)
    return future


__all__ = ["Future", "FutureError", "completed", "completed_when"]
