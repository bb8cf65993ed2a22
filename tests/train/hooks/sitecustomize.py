"""Test hook, loaded by every Python process whose PYTHONPATH starts with this directory.

With DISTRAIN_TEST_KILL_IN_CHECKPOINT=N, the process that writes the checkpoint of step N
kills itself with SIGKILL halfway through writing it (after the first chunks reached the
temporary file): the crash a power cut or an OOM kill would cause at the worst moment.
"""
import os

_step = os.environ.get("DISTRAIN_TEST_KILL_IN_CHECKPOINT")
if _step:
    import signal

    from distrain.checkpoint import writer

    _original = writer._write_atomically
    _target = f"step-{int(_step):08d}.dt"

    def _killed_halfway(path, chunks):
        if not os.path.basename(path) == _target:
            return _original(path, chunks)

        def first_chunks_then_die():
            for number, chunk in enumerate(chunks):
                yield chunk
                if number == 1:
                    os.kill(os.getpid(), signal.SIGKILL)

        return _original(path, first_chunks_then_die())

    writer._write_atomically = _killed_halfway
