"""Where a DataLoader's pass stands, as plain values: DataLoader.state_dict and load_state_dict.

NOTE [ Resuming a pass ]
A pass is fixed by its base seed (every batch's randomness is batch_seed(base seed, batch
number), in whichever process makes the batch, worker.py) and by the sampler's order. The
state holds the base seed, how many batches the user has taken (not how many the workers
have read ahead), the loader's generator, and a shuffling sampler's own if it has one, as
they were when the pass began, and a DistributedSampler's position. Resuming restores those
generators and draws the pass's order again, then skips the batches taken, indices only,
no sample read; with a DistributedSampler it starts the sampler at the saved global offset
instead, which also works with another world size (DistributedSampler's docstring states
the rule). Batch numbers go on from where they stopped, so every later batch is the one
the uninterrupted run made, whatever num_workers is. A pass draws its base seed first and
its order second, in every iterator, so drawing them again gives the same values.

distrain's global generator is the caller's to restore (a trainer saves it with the rest):
a resumed pass draws nothing from it, as the interrupted one had drawn already. A pass
whose order came from it (shuffle=True without seed= or generator=) cannot be drawn
again, so such a loader refuses to give a state.
"""
from __future__ import annotations

import copy
import itertools

from ..engine.random import Generator
from ..errors import ArgumentError
from .sampler import DistributedSampler, RandomSampler, SubsetRandomSampler, check_state

STATE_TYPES = {"batch_size": (int, type(None)), "drop_last": bool, "dataset_length": int,
               "sampler_type": (str, type(None)), "base_seed": (int, type(None)), "batches_taken": int,
               "generator": (dict, type(None)), "sampler_generator": (dict, type(None)), "sampler": (dict, type(None))}


class PassProgress:
    """Where one pass stands: what state_dict records, moved on by the iterator as the user takes batches."""

    def __init__(self, generator_states):
        self.generator_states = generator_states  # the loader's and the sampler's own, as the pass began
        self.base_seed = None
        self.batches_taken = 0  # also the number (for batch_seed) of the next batch
        self.pass_first_batch = 0  # a resumed DistributedSampler's pass begins with this batch


def begin_pass(loader):
    """A new pass's progress (also kept as loader._progress) and its batches of indices:
    drawn afresh, or the rest of the pass that a loaded state describes."""
    resume, loader._resume = loader._resume, None
    progress = PassProgress(generator_states(loader))
    if resume is None:
        progress.base_seed = loader._new_base_seed()
    else:
        if loader.generator is not None:  # drawn again (it is the saved value) so the generator moves on as before
            loader._new_base_seed()
        progress.base_seed = resume["base_seed"]
        progress.batches_taken = resume["batches_taken"]
    batches = loader._index_batches()
    if resume is not None:
        if distributed_sampler(loader) is not None:  # it began at the saved offset: nothing to skip
            progress.pass_first_batch = progress.batches_taken
        else:
            for _ in itertools.islice(batches, progress.batches_taken):  # indices only: no sample is read
                pass
    loader._progress = progress
    return progress, batches


def state_of(loader):
    """DataLoader.state_dict: the keys are listed there."""
    check_resumable(loader, "state_dict")
    if loader._resume is not None:  # loaded and not iterated yet: the position is still the loaded one
        return copy.deepcopy(loader._resume)
    sampler = distributed_sampler(loader)
    progress = loader._progress
    if progress is None:
        base_seed, taken, generators = None, 0, generator_states(loader)
        sampler_state = None if sampler is None else sampler.state_dict()
    else:
        base_seed, taken, generators = progress.base_seed, progress.batches_taken, progress.generator_states
        samples_taken = (taken - progress.pass_first_batch) * samples_per_batch(loader)
        sampler_state = None if sampler is None else sampler.state_dict(samples_taken)
    return copy.deepcopy({**built_with(loader), "base_seed": base_seed, "batches_taken": taken,
                          "generator": generators[0], "sampler_generator": generators[1], "sampler": sampler_state})


def load(loader, state):
    """DataLoader.load_state_dict: check `state` against the loader (changing nothing if it does
    not fit), restore the generators and the sampler, and return the pass to resume (None when
    the state was taken before any pass)."""
    check_resumable(loader, "load_state_dict")
    check_state("DataLoader", state, STATE_TYPES)
    for key, value in built_with(loader).items():
        if state[key] != value:
            raise ArgumentError(f"DataLoader.load_state_dict: the state was saved by a DataLoader with {key}="
                                f"{state[key]!r}, this one has {key}={value!r}; resume with a loader built as the "
                                "checkpointed one was")
    sampler, taken = distributed_sampler(loader), state["batches_taken"]
    if state["base_seed"] is None:
        most = 0  # no pass had begun
    else:  # with a DistributedSampler, the old world's batches need not fit this world's epoch
        most = taken if sampler is not None else len(loader)
    if not 0 <= taken <= most:
        raise ArgumentError(f"DataLoader.load_state_dict: batches_taken={taken} is out of range for this loader "
                            f"(a pass of {len(loader)} batches; base_seed={state['base_seed']})")
    generators = (("generator", loader.generator, "seed= or generator= of the DataLoader"),
                  ("sampler_generator", sampler_own_generator(loader), "generator= of its sampler"))
    for key, generator, where in generators:
        _check_generator_state(key, state[key], generator, where)
    if (state["sampler"] is None) != (sampler is None):
        raise ArgumentError(f"DataLoader.load_state_dict: 'sampler' is {state['sampler']!r}, but it holds a position "
                            "exactly when the loader has a DistributedSampler, and this one has a "
                            f"{type(order_sampler(loader)).__name__}")
    if sampler is not None:
        sampler.load_state_dict(state["sampler"])  # checks before it changes anything
    for key, generator, _ in generators:
        if generator is not None:
            generator.set_state(copy.deepcopy(state[key]))
    return copy.deepcopy(state) if state["base_seed"] is not None else None


def built_with(loader):
    """What a state must agree on with the loader that loads it."""
    sampler = order_sampler(loader)
    return {"batch_size": loader.batch_size, "drop_last": bool(loader.drop_last), "dataset_length": len(loader.dataset),
            "sampler_type": None if sampler is None else type(sampler).__name__}


def order_sampler(loader):
    """The sampler that decides the pass's order (the batch sampler's, when one was given)."""
    return loader.sampler if loader.sampler is not None else getattr(loader.batch_sampler, "sampler", None)


def distributed_sampler(loader):
    sampler = order_sampler(loader)
    return sampler if isinstance(sampler, DistributedSampler) else None


def samples_per_batch(loader):
    """Samples in each batch (what a DistributedSampler's position counts), None when batches vary in size."""
    if loader.batch_sampler is None:
        return 1
    size = getattr(loader.batch_sampler, "batch_size", None)
    return size if isinstance(size, int) else None


def sampler_own_generator(loader):
    """A shuffling sampler's generator when it is not the loader's (None when it is, or there is none)."""
    sampler = order_sampler(loader)
    generator = sampler.generator if isinstance(sampler, (RandomSampler, SubsetRandomSampler)) else None
    return None if generator is loader.generator else generator


def generator_states(loader):
    own = sampler_own_generator(loader)
    return (None if loader.generator is None else loader.generator.get_state(),
            None if own is None else own.get_state())


def check_resumable(loader, method):
    """Refuse a loader whose pass could not be made again, saying why and what to change."""
    sampler = order_sampler(loader)
    if loader.is_stream:
        why = ("an IterableDataset decides its own order and cannot skip what it has yielded without reading it "
               "again; use a map-style dataset")
    elif isinstance(sampler, (RandomSampler, SubsetRandomSampler)) and sampler.generator is None:
        why = (f"its {type(sampler).__name__} shuffles with distrain's global generator, so the pass's order cannot "
               "be drawn again; give the DataLoader seed= (or generator=)")
    elif distributed_sampler(loader) is not None and samples_per_batch(loader) is None:
        why = ("its batch_sampler has no fixed batch_size, so a DistributedSampler's position cannot be told from "
               "the batches taken; give batch_size= instead")
    else:
        return
    raise ArgumentError(f"DataLoader.{method}: this loader cannot resume a pass exactly: {why}")


def _check_generator_state(key, saved, generator, where):
    """The saved state fits `generator`: both absent, or a state of a generator on its device."""
    if (saved is None) != (generator is None):
        had, has = ("had one", "has none") if generator is None else ("had none", "has one")
        raise ArgumentError(f"DataLoader.load_state_dict: the saved loader {had} for {key!r} ({where}), this one "
                            f"{has}; build the loader as the checkpointed one was")
    if saved is None:
        return
    try:
        if saved.get("device") != str(generator.device):
            raise ValueError(f"saved on device {saved.get('device')!r}, this generator is on {generator.device}")
        if generator.device.type == "cpu":
            Generator(seed=0).set_state(copy.deepcopy(saved))  # a scratch one: raises on a malformed state
    except (KeyError, TypeError, ValueError) as error:
        raise ArgumentError(f"DataLoader.load_state_dict: {key!r} is not a state of this generator: {error}") from None
