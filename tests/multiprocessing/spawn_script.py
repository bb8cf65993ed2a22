"""distrain.multiprocessing.spawn's scenarios, run by test_spawn.py in a process group of their own.

`python spawn_script.py SCENARIO DIRECTORY` prints one JSON line `RESULT {...}` with what the
parent saw; the children write what they saw into DIRECTORY.
"""
import json
import os
import signal
import sys
import threading
import time

import distrain.multiprocessing as mp
from distrain.comm.ps import protocol


def write(directory, index, text):
    """Whole or not at all (the test may read while we write): a temporary name, then renamed."""
    path = os.path.join(directory, f"child-{index}")
    with open(path + ".partial", "w") as handle:
        handle.write(text)
    os.replace(path + ".partial", path)


def record(index, directory, factor):
    write(directory, index, json.dumps({"value": index * factor, "pid": os.getpid(),
                                        "secret": os.environ.get(protocol.SECRET_ENVIRONMENT_VARIABLE)}))


def park(index, directory):
    """Say who we are, then wait to be ended."""
    write(directory, index, str(os.getpid()))
    time.sleep(120)


def raise_in_one(index, directory):
    if index == 1:
        deadline = time.monotonic() + 60  # the others say who they are first, so the test can check they were ended
        while time.monotonic() < deadline and not all(os.path.exists(os.path.join(directory, f"child-{other}"))
                                                      for other in (0, 2)):
            time.sleep(0.05)
        raise ValueError(f"boom from child {index}")
    park(index, directory)


def kill_one(index, directory, how):
    if index == 0:
        if how == "signal":
            os.kill(os.getpid(), signal.SIGKILL)
        sys.exit(3)
    park(index, directory)


def sleep_then_record(index, directory, seconds):
    time.sleep(seconds)
    record(index, directory, 1)


def exception_fields(error):
    return {"type": type(error).__name__, "message": str(error), "index": error.error_index, "pid": error.error_pid,
            "exit_code": getattr(error, "exit_code", None), "signal_name": getattr(error, "signal_name", None),
            "is_process_exception": isinstance(error, mp.ProcessException)}


def main(scenario, directory):
    result = {}
    start = time.monotonic()
    if scenario == "return":
        result["returned"] = mp.spawn(record, args=(directory, 10), nprocs=3)
    elif scenario == "given_secret":
        os.environ[protocol.SECRET_ENVIRONMENT_VARIABLE] = "given-secret-0123456789abcdef"
        mp.spawn(record, args=(directory, 1), nprocs=2, start_method="fork")
    elif scenario in ("raise", "signal", "exit"):
        try:
            if scenario == "raise":
                mp.spawn(raise_in_one, args=(directory,), nprocs=3)
            else:
                mp.start_processes(kill_one, args=(directory, scenario), nprocs=2, start_method="fork")
            result["raised"] = None
        except mp.ProcessException as error:
            result["raised"] = exception_fields(error)
    elif scenario == "no_join":
        context = mp.spawn(sleep_then_record, args=(directory, 3.0), nprocs=3, join=False)
        result["pids"] = context.pids()
        result["processes"] = len(context.processes)
        result["first_join"] = context.join(timeout=0.05)
        joins = 1
        while not context.join(timeout=1.0):
            joins += 1
        result["joins_until_done"] = joins
        result["again"] = context.join()
    elif scenario == "die_with_parent":  # the test kills this process
        mp.spawn(park, args=(directory,), nprocs=2)
    elif scenario == "die_with_parent_from_thread":  # no PR_SET_PDEATHSIG: the children's watcher threads
        starter = threading.Thread(target=mp.spawn, args=(park,), kwargs={"args": (directory,), "nprocs": 2})
        starter.start()
        starter.join()
    result["parent_secret"] = os.environ.get(protocol.SECRET_ENVIRONMENT_VARIABLE)
    result["seconds"] = time.monotonic() - start
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
