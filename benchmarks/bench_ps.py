"""Parameter-server push+pull round trips, on 1 and 2 servers, against raw pyzmq moving the same bytes.

    python benchmarks/bench_ps.py [--sizes-mb 4,100] [--servers 1,2] [--workers 1,2,4] [--repeats 10] [--record]

For each (size, servers S, workers W) it starts S distrain servers and S raw servers (each a
process of its own, on loopback) and W worker processes. Every worker holds a float32 array of
the size and, round by round (the order of the two contenders alternating, a barrier before
each), times one round trip of each:

  distrain  PSCommunicator(every server).allreduce(array): pushed to the servers (split into
            partitions of at most 4 MiB, the default, spread over the S servers, when larger
            than one), summed there in rank order, pulled back into the array in place
  raw       what the same bytes cost through plain pyzmq, authenticated by nothing: the array
            cut into S equal slices, slice i sent (DEALER, frames of 1 MiB, no copy) to raw
            server i (ROUTER), which adds the W workers' slices into one buffer and sends it
            back to each (frames of 1 MiB, no copy), and each worker copies its answers into
            the array. (Whole-slice frames measured slower both ways: every large message is a
            fresh allocation, page faults included.)

A round's time is the slowest worker's; the table shows medians over the rounds and the
aggregate throughput W x size / time (each byte is pushed once and pulled once). Targets
(issue 16): distrain >= 0.8x raw's throughput at 100 MB; with 4 workers, 2 servers >= 1.5x
one server's throughput. On a machine with fewer cores than workers + servers, cores, not
servers, bound loopback bandwidth: the raw contender's own 2-server/1-server ratio shows
what the machine allows.
"""
import argparse
import multiprocessing
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # stdlib only

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
FRAME_BYTES = 2 ** 20
WARMUP_ROUNDS = 2


def distrain_server(world, addresses):
    from distrain.comm.ps.server import ParameterServer

    server = ParameterServer(world, "tcp://127.0.0.1:0")
    addresses.put(server.address)
    server.serve(until_all_left=True)


def raw_server(world, slice_bytes, addresses, host="127.0.0.1"):
    """Adds one message of each of `world` workers (in arrival order) and answers each with the sum; a one-byte
    message is a barrier (answered once all have sent one) or, b"q", the end. Listens on `host` (another
    address: bench_ps_servers_netns.py's namespaced hosts)."""
    import numpy as np
    import zmq

    context = zmq.Context()
    socket = context.socket(zmq.ROUTER)
    port = socket.bind_to_random_port(f"tcp://{host}")
    addresses.put(f"tcp://{host}:{port}")
    total = np.empty(slice_bytes // 4, np.float32)
    while True:
        senders = []
        for arrival in range(world):
            identity, *frames = socket.recv_multipart(copy=False)
            senders.append(identity)
            if len(frames) == 1 and len(frames[0]) == 1:
                continue
            offset = 0
            for frame in frames:  # each frame where it lies
                part = np.frombuffer(frame, np.float32)
                window = total[offset:offset + part.size]
                np.copyto(window, part) if arrival == 0 else np.add(window, part, out=window)
                offset += part.size
        if frames[0].bytes == b"q":
            break
        answer = [view[start:start + FRAME_BYTES] for view in [memoryview(total).cast("B")]
                  for start in range(0, len(view), FRAME_BYTES)] if len(frames[0]) > 1 else [b"b"]
        for identity in senders:
            socket.send_multipart([identity, *answer], copy=False)
    socket.close(linger=0)
    context.term()


def worker(rank, world, distrain_addresses, raw_addresses, nbytes, repeats, results):
    import numpy as np
    import zmq

    from distrain.comm.ps.client import PSCommunicator

    comm = PSCommunicator(distrain_addresses, rank, world, timeout=600)
    sockets = []
    for address in raw_addresses:  # one context (I/O thread) per server, as the distrain client has
        context = zmq.Context()
        socket = context.socket(zmq.DEALER)
        socket.connect(address)
        sockets.append((context, socket))
    array = np.full(nbytes // 4, rank + 1.0, np.float32)
    pieces = np.array_split(array, len(sockets))

    def raw_round_trip():
        for piece, (_, socket) in zip(pieces, sockets):
            view = memoryview(piece).cast("B")
            socket.send_multipart([view[start:start + FRAME_BYTES] for start in range(0, len(view), FRAME_BYTES)],
                                  copy=False)
        for piece, (_, socket) in zip(pieces, sockets):
            offset = 0
            for frame in socket.recv_multipart(copy=False):
                part = np.frombuffer(frame, np.float32)
                piece[offset:offset + part.size] = part
                offset += part.size

    def raw_barrier():
        for _, socket in sockets:
            socket.send(b"b")
        for _, socket in sockets:
            socket.recv()

    contenders = {"distrain": lambda: comm.allreduce(array), "raw": raw_round_trip}
    times = {name: [] for name in contenders}
    for round_number in range(WARMUP_ROUNDS + repeats):
        for name in (list(contenders) if round_number % 2 == 0 else list(contenders)[::-1]):
            comm.barrier()
            raw_barrier()
            start = time.perf_counter()
            contenders[name]()
            if round_number >= WARMUP_ROUNDS:
                times[name].append(time.perf_counter() - start)
    assert np.all(array == array[0])  # both kept every element alike
    for context, socket in sockets:
        socket.send(b"q")
        socket.close(linger=1000)
        context.term()
    comm.close()
    results.put((rank, times))


def measure(size_mb, servers, workers, repeats):
    """{"distrain": [round seconds], "raw": [...]}: each round's slowest worker."""
    spawn = multiprocessing.get_context("spawn")
    nbytes = int(size_mb * 2 ** 20) // 4 * 4
    queue, results = spawn.Queue(), spawn.Queue()
    started = [spawn.Process(target=distrain_server, args=(workers, queue)) for _ in range(servers)]
    for process in started:
        process.start()
    distrain_addresses = [queue.get(timeout=60) for _ in range(servers)]
    slice_bytes = -(-nbytes // 4 // servers) * 4
    raw = [spawn.Process(target=raw_server, args=(workers, slice_bytes, queue)) for _ in range(servers)]
    for process in raw:
        process.start()
    raw_addresses = [queue.get(timeout=60) for _ in range(servers)]
    ranks = [spawn.Process(target=worker, args=(rank, workers, distrain_addresses, raw_addresses, nbytes, repeats,
                                                results)) for rank in range(workers)]
    for process in ranks:
        process.start()
    per_rank = dict(results.get(timeout=1800) for _ in ranks)
    for process in ranks + started + raw:
        process.join(timeout=60)
        if process.is_alive():
            process.kill()
    return {name: [max(per_rank[rank][name][index] for rank in per_rank) for index in range(repeats)]
            for name in ("distrain", "raw")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", default="4,100", help="array sizes in MiB (default 4,100)")
    parser.add_argument("--servers", default="1,2", help="server counts (default 1,2)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("DISTRAIN_PS_SECRET", os.urandom(16).hex())  # the children inherit it
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    machine = harness.machine_info(1, "env")
    print(f"# {machine['cpu']}, {machine['cores']} cores; round trip medians over {args.repeats} rounds; "
          "throughput = workers x size / time")
    print(f"{'MiB':>5}{'servers':>8}{'workers':>8}{'distrain ms':>13}{'raw ms':>9}{'distrain GB/s':>15}"
          f"{'raw GB/s':>10}{'distrain/raw':>14}")
    throughput = {}
    for size in [float(value) for value in args.sizes_mb.split(",")]:
        for servers in [int(value) for value in args.servers.split(",")]:
            for workers in [int(value) for value in args.workers.split(",")]:
                times = measure(size, servers, workers, args.repeats)
                medians = {name: statistics.median(values) for name, values in times.items()}
                rates = {name: workers * size * 2 ** 20 / seconds / 1e9 for name, seconds in medians.items()}
                throughput[size, servers, workers] = rates
                ratio = rates["distrain"] / rates["raw"]
                print(f"{size:>5g}{servers:>8}{workers:>8}{medians['distrain'] * 1e3:>13.1f}"
                      f"{medians['raw'] * 1e3:>9.1f}{rates['distrain']:>15.2f}{rates['raw']:>10.2f}{ratio:>14.2f}",
                      flush=True)
                result = {"name": f"ps_round_trip_{size:g}MiB_{servers}servers_{workers}workers",
                          "size_mib": size, "servers": servers, "workers": workers,
                          "distrain_ms": medians["distrain"] * 1e3, "raw_ms": medians["raw"] * 1e3,
                          "distrain_gbytes_per_s": rates["distrain"], "raw_gbytes_per_s": rates["raw"],
                          "distrain_over_raw_throughput": ratio,
                          "targets": "distrain_over_raw_throughput >= 0.8 at 100 MiB", "machine": machine}
                harness.emit_result(result, RESULTS_DIR, args.record)
    for size in sorted({key[0] for key in throughput}):
        one, two = throughput.get((size, 1, 4)), throughput.get((size, 2, 4))
        if one and two:
            print(f"# {size:g} MiB, 4 workers: 2 servers / 1 server throughput: distrain "
                  f"{two['distrain'] / one['distrain']:.2f}, raw {two['raw'] / one['raw']:.2f} (target: distrain >= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
