"""Running a multi-process command in a test so that nothing outlives it.

`subprocess.run(timeout=...)` kills only the process it started: a launcher's ranks,
mpiexec's proxies or a parameter server would live on. `run_group` starts the command in
a session of its own and, on a timeout (or any error), kills that whole process group.
"""
import os
import signal
import subprocess


def run_group(command, timeout, merge_output=False, **popen_arguments) -> subprocess.CompletedProcess:
    """Run `command` to its end within `timeout` seconds, as subprocess.run(capture_output=True, text=True) does.

    On a timeout the process group is killed with SIGKILL and subprocess.TimeoutExpired
    raised. `merge_output`: stderr goes into stdout (stderr is then None).
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT if merge_output else subprocess.PIPE, text=True,
                               start_new_session=True, **popen_arguments)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
