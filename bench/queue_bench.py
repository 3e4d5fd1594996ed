#!/usr/bin/python3
"""Throughput and latency of the two job stores, on this machine, with the tiny model.

  queue_bench.py --foley build/bin/foley --bundle TINY.safetensors --clip CLIP.mp4 [--jobs 40]

Runs, one after the other, in one process (so the ratios compare like with like):
  1. embedded `foley serve` (SQLite journal): GET /v1/generations/{id} latency (p50/p99)
  2. Redis front end + workers: the same GET through the front end
  3. clips/min through the Redis queue with 1 worker, then with 2 workers (each worker
     FOLEY_THREADS=1, so the second worker adds a core rather than contending for one)
Prints one line per figure; BENCHMARKS.md quotes them. Loopback only; everything it starts is
stopped at the end.
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from foley_http import Proc, free_port, submit


def state(conn, jid):
    conn.request("GET", f"/v1/generations/{jid}")
    r = conn.getresponse()
    return json.loads(r.read()).get("state")


def get_latency_ms(port, jid, n=400):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        state(conn, jid)
        times.append((time.perf_counter() - t0) * 1000)
    conn.close()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def wait_all(port, ids, timeout=600):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    end = time.time() + timeout
    left = set(ids)
    while left and time.time() < end:
        for j in list(left):
            if state(conn, j) in ("succeeded", "failed", "cancelled"):
                left.discard(j)
        time.sleep(0.05)
    conn.close()
    if left:
        raise RuntimeError(f"{len(left)} jobs did not finish")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--foley", required=True)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--clip", required=True)
    ap.add_argument("--jobs", type=int, default=40)
    ap.add_argument("--steps", type=int, default=4)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="foley-queue-bench-")
    env = dict(os.environ, FOLEY_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    procs = []
    try:
        # 1. embedded
        emb = Proc([a.foley, "serve", "--model", a.bundle, "--port", "0", "--max-clip-seconds", "1",
                    "--data-dir", os.path.join(tmp, "embedded")], env, "ready on")
        procs.append(emb)
        jid = submit(emb.port, a.clip, 1, 0)
        wait_all(emb.port, [jid])
        p50, p99 = get_latency_ms(emb.port, jid)
        print(f"embedded GET status: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        emb.stop()

        # 2./3. Redis
        rport = free_port()
        rdir = os.path.join(tmp, "redis")
        os.makedirs(rdir)
        redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--dir", rdir,
                                  "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        url = f"redis://127.0.0.1:{rport}/0"
        shared = os.path.join(tmp, "shared")
        fe = Proc([a.foley, "serve", "--queue", url, "--data-dir", shared, "--port", "0",
                   "--queue-size", "1000", "--max-clip-seconds", "1"], env, "ready on")
        procs.append(fe)
        workers = []

        def add_worker(name):
            w = Proc([a.foley, "worker", "--queue", url, "--data-dir", shared, "--model", a.bundle,
                      "--name", name, "--max-clip-seconds", "1"], env, f"foley worker {name}: ready")
            procs.append(w)
            workers.append(w)

        add_worker("w1")
        jid = submit(fe.port, a.clip, 1, 0)
        wait_all(fe.port, [jid])
        p50, p99 = get_latency_ms(fe.port, jid)
        print(f"front end GET status: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        def redis_calls():
            out = subprocess.run(["redis-cli", "-p", str(rport), "INFO", "commandstats"],
                                 capture_output=True, text=True).stdout
            return sum(int(l.split("calls=")[1].split(",")[0]) for l in out.splitlines() if "calls=" in l)

        rates = {}
        calls_before = redis_calls()
        for n in (1, 2):
            if n == 2:
                add_worker("w2")
            t0 = time.time()
            ids = [submit(fe.port, a.clip, a.steps, i) for i in range(a.jobs)]
            wait_all(fe.port, ids)
            rates[n] = a.jobs / (time.time() - t0) * 60
            print(f"{n} worker(s): {a.jobs} jobs of {a.steps} steps, {rates[n]:.1f} clips/min")
        print(f"2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")
        calls = redis_calls() - calls_before
        print(f"Redis commands: {calls} for {2 * a.jobs} jobs of {a.steps} steps = {calls / (2 * a.jobs):.0f} per job "
              "(submit, start, progress <= 10/s, heartbeats 4/s per busy worker, finish, ack, "
              "the front end's status reads and the idle workers' polls)")
        redis.terminate()
        redis.wait(10)
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
