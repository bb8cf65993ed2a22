"""$DISTRAIN_MPI_PROGRESS switches the MPI communicator's progress thread, and only how MPI progresses.

Unset or "thread": the thread "distrain-mpi-progress" runs from init() to shutdown(); "test": no thread
(requests are tested from the waits and the reducer's hooks); anything else is refused, naming the variable.
The trained weights are bit-identical either way (mpi_progress_script.py).
"""
import os
import re

import pytest

from .test_mpi import assert_every_rank_ok, run_ranks

SCRIPT = os.path.join(os.path.dirname(__file__), "mpi_progress_script.py")
VARIABLE = "DISTRAIN_MPI_PROGRESS"


def run_with(monkeypatch, setting, expect, ranks=2):
    if setting is None:
        monkeypatch.delenv(VARIABLE, raising=False)
    else:
        monkeypatch.setenv(VARIABLE, setting)
    code, output = run_ranks(ranks, expect, script=SCRIPT, timeout=90)
    assert code == 0, f"{VARIABLE}={setting}:\n{output}"
    assert_every_rank_ok(output, ranks)
    return re.findall(r"digest (\w+)", output)


@pytest.mark.timeout(300)
def test_the_variable_starts_or_stops_the_progress_thread_and_results_stay_the_same(monkeypatch):
    digests = {setting: run_with(monkeypatch, setting, expect)
               for setting, expect in ((None, "thread"), ("thread", "thread"), ("test", "none"))}
    assert all(len(found) == 1 for found in digests.values()), digests
    assert len({found[0] for found in digests.values()}) == 1, f"the weights depend on {VARIABLE}: {digests}"


@pytest.mark.timeout(120)
def test_an_unknown_setting_is_refused_naming_the_variable(monkeypatch):
    run_with(monkeypatch, "bogus-mode", "refused", ranks=1)
