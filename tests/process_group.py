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


def free_port(neighbours=1):
    """A free port P on 127.0.0.1 whose next `neighbours` ports are free too: under torchrun, distrain's rendezvous
    serves at MASTER_PORT + 1 (torchrun's agent keeps MASTER_PORT), and several parameter servers listen at
    PORT + i; a P + 1 that some other process held failed a CI run ("Address already in use")."""
    import socket

    for _ in range(100):
        probes = [socket.socket() for _ in range(neighbours + 1)]
        try:
            probes[0].bind(("127.0.0.1", 0))
            port = probes[0].getsockname()[1]
            for offset, probe in enumerate(probes[1:], start=1):
                probe.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no {neighbours + 1} adjacent free ports on 127.0.0.1")
