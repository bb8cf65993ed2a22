"""`python -m distrain.launch`: run a training script on every rank.

Three ways to use it:

    mpirun -n 4 python -m distrain.launch train.py --epochs 3          # under an MPI launcher (or srun)
    python -m distrain.launch -n 4 train.py --epochs 3                 # it starts mpiexec for you
    python -m distrain.launch -n 4 --backend ps train.py --epochs 3    # no MPI: it starts the ranks itself

Under a launcher, each process discovers its rank, world size and local rank from the
launcher's environment (Open MPI, MPICH/PMI, Slurm, or RANK/WORLD_SIZE as torchrun sets
them), exports them as RANK, WORLD_SIZE, LOCAL_RANK (and DISTRAIN_RANK, ...), selects GPU
`local_rank` when there are GPUs, installs an exception hook that ends the whole job when
this rank fails (otherwise the other ranks would wait in a collective forever), and runs
the script as `__main__` with its arguments.

With `-n N` and the mpi backend it runs the `mpiexec` that the `mpi` extra's MPICH wheel
installs; with `--backend ps` or `nccl` it starts the N ranks itself around a rendezvous
server (spawn.py). Either way every output line carries its rank's "[r] " prefix
(`--no-prefix` drops it, `--rank0-only` silences the standard output of every rank but
0), a failing rank stops the job, and Ctrl-C stops every rank.
Without a script it runs the trainer (distrain/train/): a configured data-parallel run
(`--config FILE.toml`, `--set KEY=VALUE`, `--resume`, `--timeline`; every key in
configs/default.toml) that shows its progress and writes metrics, checkpoints and plots.

The command lines are built by pure functions (`mpiexec_command`) and executed, never
formatted into a shell string.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import runpy
import shutil
import signal
import subprocess
import sys
import time
import traceback

from .comm.ranks import discover_local_size, discover_ranks, under_mpi_launcher
from .engine.threads import THREAD_VARIABLES
from .process_lifetime import process_is_running

ABORT_GRACE_SECONDS = 0.5
SUPERVISED_VARIABLE = "DISTRAIN_SUPERVISED"  # set in a rank that runs under a supervisor (supervision.py)

def rank_environment(rank, size, local_rank, local_size=None):
    """The variables a rank exports for the script (PyTorch's names and distrain's)."""
    values = {"RANK": rank, "WORLD_SIZE": size, "LOCAL_RANK": local_rank}
    if local_size is not None:
        values["LOCAL_WORLD_SIZE"] = local_size
    return {**{k: str(v) for k, v in values.items()}, **{f"DISTRAIN_{k}": str(v) for k, v in values.items()}}


def threads_per_rank(ranks_here, environ=os.environ):
    """The BLAS/OpenMP thread counts for `ranks_here` ranks sharing this machine, unless the user chose them.

    Each rank's BLAS otherwise starts one thread per core, so N ranks run N x cores threads
    on the cores: OpenBLAS's threads spin while they wait for a core, and a small GEMM
    becomes 20x slower (measured: the default CNN's step 80 ms instead of 3.7 ms with two
    ranks on two cores). torchrun sets OMP_NUM_THREADS=1 for the same reason; we give each
    rank its share of the cores. Any of the variables set by the user wins, for all of them.
    """
    if ranks_here <= 1 or any(environ.get(variable) for variable in THREAD_VARIABLES):
        return {}
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    share = str(max(1, cores // ranks_here))
    return {variable: share for variable in THREAD_VARIABLES}


def mpiexec_command(mpiexec, count, script_argv, python=sys.executable, prefix=True, rank0_only=False,
                    launcher_pid=None):
    """The argv that starts `count` ranks of `python -m distrain.launch script_argv...` under MPICH's mpiexec."""
    command = [mpiexec, "-n", str(count)]
    if launcher_pid is not None:  # ranks exit if the launcher is killed (mpiexec would run on without it)
        command += ["-genv", "DISTRAIN_LAUNCHER_PID", str(launcher_pid)]
    if prefix:
        command.append("-prepend-rank")  # "[r] " before every output line
    if rank0_only:
        command += ["-genv", "DISTRAIN_RANK0_ONLY", "1"]
    return command + [python, "-m", "distrain.launch", *script_argv]


def find_mpiexec():
    here = os.path.dirname(sys.executable)
    found = shutil.which("mpiexec", path=here + os.pathsep + os.environ.get("PATH", ""))
    if found is None:
        raise SystemExit("distrain.launch -n: mpiexec not found; pip install 'distrain[mpi]' (the mpich wheel brings it), "
                         "start the ranks yourself with mpirun, or use --backend ps (no MPI needed)")
    return found


def _end_job_on_error(rank, use_mpi):
    """An uncaught exception on this rank prints its traceback and ends the job.

    It tells the other ranks first (the liveness side channel: they stop waiting for this
    one), then exits at once with code 1, skipping atexit handlers that could block on
    ranks that wait on us. Under MPI, a process that exits without MPI_Finalize makes
    mpiexec stop the whole job; a rank that is not supervised (SUPERVISED_VARIABLE unset)
    calls MPI Abort to be sure.
    """

    def hook(kind, value, trace):
        sys.stderr.write(f"distrain.launch: rank {rank} failed:\n" + "".join(traceback.format_exception(kind, value, trace)))
        lost = _lost_peers(value)
        name = kind.__name__
        if lost:  # only a consequence of another rank's end: let one line name that rank (supervision.py)
            from .supervision import LOST_PEER_ERROR, leave_note, note_for_lost_peer

            leave_note(note_for_lost_peer(rank, lost))
            name = LOST_PEER_ERROR  # so the other ranks know it for a consequence too
        _leave(1, f"raised {name}: {value}"[:300], use_mpi)

    sys.excepthook = hook


def _lost_peers(error):
    """The lost ranks' liveness entries if `error` (or what caused it) is a PeerLostError, else None."""
    from .comm.base import PeerLostError

    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, PeerLostError):
            return error.lost
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _leave(code, how, use_mpi):
    """End this rank now with `code`, after telling the other ranks `how` (no atexit handlers, no MPI_Finalize)."""
    from .comm.liveness import say_goodbye

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    say_goodbye(how)
    if use_mpi and not os.environ.get(SUPERVISED_VARIABLE) and "mpi4py" in sys.modules:
        time.sleep(ABORT_GRACE_SECONDS)  # let mpiexec forward the traceback before Abort tears the job down
        with contextlib.suppress(Exception):
            sys.modules["mpi4py"].MPI.COMM_WORLD.Abort(code)
    os._exit(code)


def _exit_when_orphaned(launcher_pid):
    """A rank whose launcher died (kill -9) exits within a second instead of living on.

    It watches the launcher's pid rather than its own parent: under mpiexec the parent is
    MPICH's proxy, and a program the rank starts inherits the variable with another parent.
    """

    def watch():
        while process_is_running(launcher_pid):
            time.sleep(0.5)
        try:
            sys.stderr.write(f"distrain.launch: the launcher (pid {launcher_pid}) is gone; this rank exits\n")
            sys.stderr.flush()
        except OSError:  # the launcher read our stderr through a pipe, now broken
            pass
        os._exit(1)

    import threading

    threading.Thread(target=watch, name="distrain-orphan-watch", daemon=True).start()


def _silence_stdout():
    """--rank0-only on a rank other than 0: standard output (Python's and C's) goes nowhere; stderr stays."""
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _select_gpu(local_rank):
    """Make GPU local_rank (modulo the count) current before the script allocates anything on a GPU."""
    if importlib.util.find_spec("cupy") is None:  # the common CPU case costs no import
        return
    from .engine.backend import cuda_device_count, cupy_module

    count = cuda_device_count()
    if count:
        cupy_module().cuda.Device(local_rank % count).use()


def run_as_rank(script_argv, trainer_args=None):
    """Inside one rank: export the rank variables, guard against hangs, run the script or the trainer."""
    rank, size, local_rank = discover_ranks()
    os.environ.update(rank_environment(rank, size, local_rank, discover_local_size()))
    if os.environ.get("DISTRAIN_LAUNCHER_PID"):
        _exit_when_orphaned(int(os.environ["DISTRAIN_LAUNCHER_PID"]))
        # the launcher stops ranks with SIGINT: make it raise KeyboardInterrupt (so `finally` blocks run) even if
        # this process inherited SIGINT ignored (a launcher started with nohup or `&`)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.environ.get("DISTRAIN_RANK0_ONLY") and rank != 0:
        _silence_stdout()
    _select_gpu(local_rank)
    use_mpi = under_mpi_launcher()
    if size > 1:
        _end_job_on_error(rank, use_mpi)
        # one write per line, so a launcher's rank prefix ("[r] ") lands once per line, not per print() piece
        for stream in (sys.stdout, sys.stderr):
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(line_buffering=True, write_through=False)
    try:
        if not script_argv:
            from .train.command import run_rank

            code = run_rank(trainer_args, rank, size)
            if code:
                raise SystemExit(code)
        else:
            _run_script(rank, script_argv)
    except SystemExit as stop:
        code = _exit_code(stop.code)
        if size > 1 and code != 0:  # a rank that quits with an error ends the job, as an exception does
            if not isinstance(stop.code, int):
                sys.stderr.write(f"{stop.code}\n")
            _leave(code, f"exited with code {code} (sys.exit)", use_mpi)
        _say_goodbye(size, "exited with code 0 (sys.exit)")
        raise
    _say_goodbye(size, "exited with code 0 (its script ended)")
    return 0


def _say_goodbye(size, how):
    if size > 1:
        from .comm.liveness import say_goodbye

        say_goodbye(how)


def _exit_code(code):
    """The process exit code for SystemExit(code), as Python computes it (a message counts as 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    return 1


def _run_script(rank, script_argv):
    script, *arguments = script_argv
    if not os.path.exists(script):
        raise SystemExit(f"distrain.launch: rank {rank}: no such script: {script}")
    sys.argv = [script, *arguments]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")


def _supervise(script_argv):
    """Under an MPI launcher: run this rank as a supervised child (supervision.py); returns the exit code."""
    from .supervision import supervise_rank

    rank, _, _ = discover_ranks()
    environment = {**os.environ, **threads_per_rank(discover_local_size() or 1), SUPERVISED_VARIABLE: "1"}
    return supervise_rank(rank, [sys.executable, "-m", "distrain.launch", *script_argv], environment)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m distrain.launch", description=__doc__.split("\n\n")[0],
        usage="python -m distrain.launch [-n N | --nproc_per_node N] [--backend mpi|ps|nccl] [--servers S] "
              "[--partition-mb MB] [--ps-mode sync|async] [--staleness K] [--no-prefix] [--rank0-only] "
              "[--config FILE.toml] [--set KEY=VALUE ...] [--resume] [--timeline [PATH]] [script.py [args ...]]")
    parser.add_argument("-n", "--nproc", "--nproc_per_node", "--nproc-per-node", type=int, dest="nproc",
                        help="start N ranks on this machine (omit under mpirun/srun); torchrun's --nproc_per_node too")
    parser.add_argument("--backend", default="mpi", choices=["mpi", "ps", "nccl"],
                        help="with -n: mpi runs mpiexec; ps (ZeroMQ parameter server) and nccl (one GPU per rank) "
                             "start the ranks around a rendezvous server (default mpi)")
    parser.add_argument("--servers", type=int, default=1,
                        help="with --backend ps: how many parameter servers (default 1); allreduces larger than a "
                             "partition are split among them, so push/pull bandwidth grows with them (the first is "
                             "the launcher's, the others processes of their own; with --nnodes all on node 0, at "
                             "--server's port + 1, + 2, ...)")
    parser.add_argument("--partition-mb", type=float, dest="partition_mb",
                        help="with several --servers: the largest piece (MiB) of an allreduce one server gets "
                             "(default 4, or $DISTRAIN_PS_PARTITION_MB)")
    parser.add_argument("--ps-mode", choices=["sync", "async"], dest="ps_mode",
                        help="with --backend ps: sync (default) averages gradients every step as MPI does; async "
                             "pushes them to the servers, which run the optimizer, ranks at most --staleness steps "
                             "apart (DistributedDataParallel follows it)")
    parser.add_argument("--staleness", dest="staleness",
                        help="with --ps-mode async: how many steps a rank may run ahead of the slowest (default 0: "
                             "exactly synchronous training; inf: unbounded)")
    parser.add_argument("--staleness-damping", action="store_true", dest="staleness_damping",
                        help="with --ps-mode async: damp the learning rate of gradients staler than one round")
    parser.add_argument("--max-restarts", "--max_restarts", type=int, default=0, dest="max_restarts",
                        help="with --ps-mode async: restart a rank that fails, up to this many times in all (it joins "
                             "at the current step); a rank that is not restarted is left out and the others go on")
    parser.add_argument("--ps-checkpoint-dir", dest="ps_checkpoint_dir", metavar="DIR",
                        help="with --ps-mode async: the servers keep the parameters and optimizer state here "
                             "(server-I.ckpt), every --ps-checkpoint-every updates; a server that dies is restarted "
                             "from it (within --max-restarts) and the ranks reconnect; a job started again with the "
                             "same directory resumes from it")
    parser.add_argument("--ps-checkpoint-every", type=int, dest="ps_checkpoint_every", metavar="N",
                        help="with --ps-checkpoint-dir: updates between the servers' checkpoints (default 100)")
    parser.add_argument("--no-prefix", action="store_true", help="no \"[rank] \" prefix on output lines")
    parser.add_argument("--rank0-only", action="store_true",
                        help="show only rank 0's standard output (every rank's stderr still shows)")
    several = parser.add_argument_group("several machines without MPI (ps, nccl): one launcher per machine")
    several.add_argument("--nnodes", type=int, default=1, help="how many machines (default 1)")
    several.add_argument("--node-rank", "--node_rank", type=int, default=0, dest="node_rank",
                         help="this machine's number, 0..nnodes-1")
    several.add_argument("--server", help="tcp://HOST:PORT of node 0's rendezvous server (node 0 listens there)")
    several.add_argument("--master-addr", "--master_addr", dest="master_addr",
                         help="torchrun's spelling of --server's HOST (with --master-port)")
    several.add_argument("--master-port", "--master_port", dest="master_port", type=int,
                         help="torchrun's spelling of --server's PORT (with --master-addr)")
    several.add_argument("--standalone", action="store_true", help="torchrun's one-machine flag: the default here")
    several.add_argument("--secret-file", help="the secret (chmod 600) that every machine's launcher of one job must "
                                               "share (else $DISTRAIN_PS_SECRET); on one machine each job gets a "
                                               "fresh one by itself")
    from .train.command import add_arguments, preflight, rank_argv, uses_trainer_options

    add_arguments(parser)
    parser.add_argument("script_argv", nargs=argparse.REMAINDER,
                        help="the script and its arguments (none: the built-in trainer)")
    args = parser.parse_args(argv)
    if (args.master_addr is None) != (args.master_port is None):
        parser.error("--master-addr and --master-port go together (torchrun's spelling of --server tcp://HOST:PORT)")
    if args.master_addr is not None:
        if args.server:
            parser.error("give --server or --master-addr/--master-port, not both")
        if args.backend != "mpi":  # under MPI, mpiexec does the rendezvous: torchrun's flags have nothing to do
            args.server = f"tcp://{args.master_addr}:{args.master_port}"
    from .ps_servers import check_server_count

    wrong = check_server_count(args.servers, args.backend, args.nproc)
    if wrong:
        parser.error(wrong)
    if args.partition_mb is not None:
        from .comm.ps.partitions import partition_bytes

        if args.backend != "ps":
            parser.error(f"--partition-mb is for --backend ps (it sizes the pieces of an allreduce that several "
                         f"parameter servers share), not {args.backend}")
        try:
            partition_bytes(args.partition_mb)
        except ValueError as error:
            parser.error(str(error).replace("partition_mb=", "--partition-mb", 1))
    wrong = _check_ps_mode(args)
    if wrong:
        parser.error(wrong)
    if args.script_argv and uses_trainer_options(args):
        parser.error("--config, --set, --resume, --timeline and --debug are the built-in trainer's options; "
                     "with a script, put your script's own options after its name")
    if args.nproc is None:
        if under_mpi_launcher() and not os.environ.get(SUPERVISED_VARIABLE):
            return _supervise(rank_argv(args) + args.script_argv)
        return run_as_rank(args.script_argv, args)
    if args.nproc < 1:
        parser.error(f"-n must be at least 1, got {args.nproc}")
    # NOTE [ Restarting a rank ] in spawn.py: ranks of an asynchronous job of your own script may come and go; the
    # built-in trainer's ranks meet in collectives (averaging losses, evaluating), so one lost stops its job
    tolerant = args.ps_mode == "async" and bool(args.script_argv)
    os.environ.update(threads_per_rank(args.nproc))
    if not args.script_argv:  # the trainer: check the configuration here, once, before starting any rank
        code = preflight(args, args.nproc * args.nnodes)
        if code:
            return code
        if sys.stderr.isatty():  # ranks write through pipes: tell them a person is watching (a progress bar)
            os.environ["DISTRAIN_INTERACTIVE"] = "1"
        args.script_argv = rank_argv(args)
    if args.backend != "mpi":
        from .comm.ps.protocol import read_secret_file
        from .spawn import run_workers

        try:
            return run_workers(args.nproc, args.backend, args.script_argv, prefix=not args.no_prefix,
                               rank0_only=args.rank0_only, nnodes=args.nnodes, node_rank=args.node_rank,
                               server=args.server, servers=args.servers, partition_mb=args.partition_mb,
                               max_restarts=args.max_restarts, tolerant=tolerant,
                               checkpoint_dir=args.ps_checkpoint_dir, checkpoint_every=args.ps_checkpoint_every,
                               secret=read_secret_file(args.secret_file) if args.secret_file else None)
        except (ValueError, OSError) as error:
            parser.error(str(error))
    if args.nnodes != 1:
        parser.error("--nnodes is for --backend ps or nccl; with MPI, mpirun starts the ranks on several machines "
                     "(launchers/mpirun.sh)")
    return _run_mpiexec(args)


def _check_ps_mode(args):
    """The asynchronous-mode flags: for --backend ps only, a valid bound; handed to the ranks in their
    environment (comm/ps/modes.py). Returns what is wrong, or None."""
    from .comm.ps import modes

    if args.max_restarts < 0:
        return f"--max-restarts must be 0 or more, got {args.max_restarts}"
    if args.max_restarts and not args.script_argv:
        return ("--max-restarts is for an asynchronous loop of your own script: the built-in trainer's ranks meet in "
                "collectives (averaging the losses, evaluations, checkpoints), which a restarted rank cannot rejoin; "
                "a failed rank stops the trainer's job, and --resume continues it from its last checkpoint")
    if args.max_restarts and args.ps_mode != "async":
        return ("--max-restarts restarts a failed rank of an asynchronous parameter-server job (--backend ps "
                "--ps-mode async), which ranks may leave and join; a synchronous job stops when a rank is lost: "
                "run it again with --resume to continue from its last checkpoint")
    if (args.ps_checkpoint_dir or args.ps_checkpoint_every is not None) and args.ps_mode != "async":
        return ("--ps-checkpoint-dir and --ps-checkpoint-every are for --ps-mode async, where the servers hold the "
                "parameters (a synchronous job's trainer checkpoints them: --resume)")
    if args.ps_checkpoint_every is not None and args.ps_checkpoint_every < 1:
        return f"--ps-checkpoint-every must be at least 1 update, got {args.ps_checkpoint_every}"
    given = [flag for flag, value in (("--ps-mode", args.ps_mode), ("--staleness", args.staleness),
                                      ("--staleness-damping", args.staleness_damping or None)) if value is not None]
    if not given:
        return None
    if args.backend != "ps":
        return f"{given[0]} is for --backend ps (the parameter server), not {args.backend}"
    if args.ps_mode != "async" and (args.staleness is not None or args.staleness_damping):
        return "--staleness and --staleness-damping are for --ps-mode async"
    try:
        bound = modes.staleness(args.staleness, where="--staleness")
    except ValueError as error:
        return str(error)
    os.environ[modes.MODE_ENVIRONMENT_VARIABLE] = args.ps_mode
    os.environ[modes.STALENESS_ENVIRONMENT_VARIABLE] = str(bound)
    os.environ[modes.DAMPING_ENVIRONMENT_VARIABLE] = "1" if args.staleness_damping else "0"
    return None


def _run_mpiexec(args):
    """`-n N` with the mpi backend: run the ranks under mpiexec; exit with the failing rank's code (128+n for signals).

    Each rank's supervisor (supervision.py) prints the line naming the failing rank and
    leaves its exit code in a private file, since mpiexec's own code is the signal it used
    to stop the other ranks, not the failing rank's.
    """
    import tempfile

    from .spawn import MPIEXEC_GRACE_SECONDS, interrupt_on_sigterm, stop_ranks
    from .supervision import VERDICT_VARIABLE, describe_ending, read_verdict

    command = mpiexec_command(find_mpiexec(), args.nproc, args.script_argv, prefix=not args.no_prefix,
                              rank0_only=args.rank0_only, launcher_pid=os.getpid())
    with tempfile.TemporaryDirectory(prefix="distrain-job-") as private:  # mode 700
        verdict_file = os.path.join(private, "verdict")
        environment = {**os.environ, VERDICT_VARIABLE: verdict_file}
        process = subprocess.Popen(command, env=environment, start_new_session=True)
        try:
            with interrupt_on_sigterm():
                code = process.wait()
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop every rank, then leave
            stop_ranks([process], signal.SIGINT, MPIEXEC_GRACE_SECONDS)
            sys.stderr.write(f"distrain.launch: interrupted; stopped all {args.nproc} ranks\n")
            return 130
        found = read_verdict(verdict_file)
    if found is not None:
        return found[0]  # its supervisor has printed the line naming the rank
    if code != 0:
        sys.stderr.write(f"distrain.launch: the job failed: mpiexec {describe_ending(code)}\n")
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
