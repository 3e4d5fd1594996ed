#!/usr/bin/python3
"""Throughput and latency through the real HTTP server (`foley serve` and its scheduler), at
several client concurrencies: the server-level numbers of BENCHMARKS.md "Server throughput (GPU)".

  serve_bench.py --foley build/bin/foley --bundle B.safetensors --clip CLIP.y4m \\
      [--device cuda|cpu] [--server-args "--max-batch 4 --batch-window-ms 30"] \\
      [--concurrency 1,2,4,8] [--requests-per-level 8,8,12,16] [--steps N] [--json OUT]

Starts `foley serve` on a free loopback port with the bundle (and the server flags given), waits
for it to be ready, sends one warm request (not counted), then for each concurrency C runs a
closed loop: C client threads, each uploading the clip (multipart POST /v1/generations), waiting
for the job's terminal event (GET .../events, Server-Sent Events), deleting the job and sending
the next, until the level's requests are done. Per level it prints clips/min (completed / wall
time from the first submission to the last result), p50/p99 end-to-end latency (upload start ->
the "done" event), the server's per-stage timings (mean), the denoising time per step, the
batch sizes the scheduler formed, and with --device cuda the GPU memory peak (nvidia-smi every
100 ms) beside the server's own accounting (/metrics). Exits 1 if any request failed. The server
is stopped at the end, on errors and on Ctrl-C / SIGTERM (and dies with this process).
Standard library only.

Uploads: the server refuses bodies above --max-upload-mb (256 by default; a 10-s 320x240 Y4M is
29 MB): raise it through --server-args for bigger clips. A foley built without FFmpeg (the device
build) takes Y4M only and never muxes; one with FFmpeg tries to mux each result into MP4 (a Y4M's
raw video cannot be, so only a log line), visible as a "mux" stage when it does.
"""

import argparse
import datetime
import http.client
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from foley_http import Proc, die_with_parent, multipart, post_generation


def percentile(values, q):
    """Nearest-rank percentile (with fewer than 100 values, p99 is the largest)."""
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def iso_seconds(text):
    if not text:
        return None
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


class GpuMemory:
    """memory.used of every GPU, sampled by `nvidia-smi -lms 100`; `peak()` since the last
    `reset()` and since start, in MiB."""

    def __init__(self):
        self.p = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits",
             "-lms", "100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            preexec_fn=die_with_parent)
        self.lock = threading.Lock()
        self.first = {}  # index -> MiB at the first sample (before the server started)
        self.level = {}
        self.overall = {}
        self.got_first = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            try:
                idx, used = (int(x) for x in line.split(","))
            except ValueError:
                continue
            with self.lock:
                self.first.setdefault(idx, used)
                self.level[idx] = max(self.level.get(idx, 0), used)
                self.overall[idx] = max(self.overall.get(idx, 0), used)
            self.got_first.set()

    def reset(self):
        with self.lock:
            self.level = {}

    def peak(self, overall=False):
        """(GPU index, peak MiB) of the GPU whose peak is highest, or None without samples."""
        with self.lock:
            d = self.overall if overall else self.level
            return max(d.items(), key=lambda kv: kv[1]) if d else None

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()


def wait_terminal(port, jid, timeout):
    """Reads the job's event stream up to its terminal event; returns (name, data)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", f"/v1/generations/{jid}/events")
        r = c.getresponse()
        if r.status != 200:
            raise RuntimeError(f"events: HTTP {r.status} {r.read()[:200]!r}")
        name, data = None, []
        while True:
            line = r.readline()
            if not line:
                raise RuntimeError("the event stream ended before the job did")
            line = line.decode().rstrip("\r\n")
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line:
                if name in ("done", "failed", "cancelled"):
                    return name, json.loads("\n".join(data))
                name, data = None, []
    finally:
        c.close()


def delete_job(port, jid):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("DELETE", f"/v1/generations/{jid}")
        c.getresponse().read()
    finally:
        c.close()


def metrics(port):
    """The server's gauges (name -> value) from /metrics, unlabelled ones only."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    finally:
        c.close()
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#") and "{" not in parts[0]:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return out


class Client:
    """Builds the upload once; `run(seed)` sends one request and returns its record."""

    def __init__(self, port, clip, steps, prompt, timeout):
        with open(clip, "rb") as f:
            self.video = f.read()
        self.name = os.path.basename(clip)
        self.port, self.steps, self.prompt, self.timeout = port, steps, prompt, timeout

    def run(self, seed):
        fields = {"prompt": self.prompt, "seed": str(seed)}
        if self.steps:
            fields["steps"] = str(self.steps)
        body, ctype = multipart(fields, self.name, self.video)
        rec = {"seed": seed, "retries": 0}
        t0 = time.perf_counter()
        while True:
            status, data, retry_after = post_generation(self.port, body, ctype, self.timeout)
            if status == 202:
                break
            if status not in (429, 503) or time.perf_counter() - t0 > self.timeout:
                raise RuntimeError(f"submit: HTTP {status} {data}")
            rec["retries"] += 1  # the queue is full: what a client does, and it counts
            time.sleep(min(1.0, float(retry_after or 0.1)))
        rec["submit_s"] = time.perf_counter() - t0
        jid = data["id"]
        name, job = wait_terminal(self.port, jid, self.timeout)
        rec["latency_s"] = time.perf_counter() - t0
        rec["state"] = name
        if name != "done":
            rec["error"] = job.get("error")
        else:
            rec["batch_size"] = job.get("batch_size", 1)
            rec["timings"] = job.get("timings", {})
            rec["steps"] = job.get("params", {}).get("steps")
            rec["audio_seconds"] = job.get("audio_seconds")
            created, started, finished = (iso_seconds(job.get(k)) for k in
                                          ("created_at", "started_at", "finished_at"))
            if created and started and finished:
                rec["queued_s"], rec["run_s"] = started - created, finished - started
        delete_job(self.port, jid)
        return rec


def run_level(client, concurrency, n, seed0):
    """Closed loop: `concurrency` threads share `n` requests; returns (records, errors, wall)."""
    lock = threading.Lock()
    state = {"next": 0}
    records, errors = [], []

    def worker():
        while True:
            with lock:
                i = state["next"]
                if i >= n:
                    return
                state["next"] += 1
            try:
                rec = client.run(seed0 + i)
            except Exception as e:  # noqa: BLE001 - a failed request is a result too
                rec = {"state": "error", "error": str(e)}
            with lock:
                (records if rec["state"] == "done" else errors).append(rec)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)  # short joins: Ctrl-C reaches the main thread
    return records, errors, time.perf_counter() - t0


def summarize(label, c, records, errors, wall, gpu, server):
    ok = len(records)
    out = {"concurrency": c, "requests": ok + len(errors), "ok": ok, "failed": len(errors),
           "wall_s": wall, "clips_per_min": ok / wall * 60 if wall > 0 else 0.0}
    tag = f"{label}c={c}"
    print(f"{tag} throughput: {out['clips_per_min']:.2f} clips/min ({ok} ok, {len(errors)} failed, "
          f"wall {wall:.2f} s)")
    for e in errors[:3]:
        print(f"{tag} error: {e.get('error')}")
    if records:
        lat = [r["latency_s"] for r in records]
        out.update(latency_s=lat, p50_s=percentile(lat, 50), p99_s=percentile(lat, 99),
                   submit_p50_s=percentile([r["submit_s"] for r in records], 50))
        print(f"{tag} latency: p50 {out['p50_s']:.3f} s, p99 {out['p99_s']:.3f} s "
              f"(upload -> done event; upload+accept p50 {out['submit_p50_s'] * 1000:.0f} ms)")
        waits = [r["queued_s"] for r in records if "queued_s" in r]
        runs = [r["run_s"] for r in records if "run_s" in r]
        if waits:
            out.update(queued_mean_s=statistics.mean(waits), run_mean_s=statistics.mean(runs))
            print(f"{tag} server: queued mean {out['queued_mean_s']:.3f} s, running mean "
                  f"{out['run_mean_s']:.3f} s (created/started/finished_at)")
        sizes = {}
        for r in records:
            sizes[r["batch_size"]] = sizes.get(r["batch_size"], 0) + 1
        out["batch_sizes"] = {str(k): v for k, v in sorted(sizes.items())}
        print(f"{tag} batch sizes: " + ", ".join(f"{v} jobs in batches of {k}"
                                                  for k, v in sorted(sizes.items())))
        stages = {}
        for r in records:
            for k, v in r["timings"].items():
                stages.setdefault(k, []).append(v)
        order = ["decode", "visual", "sync", "text", "denoise", "vae"]  # the pipeline's, then others
        out["stages_mean_s"] = {k: statistics.mean(stages[k]) for k in sorted(
            stages, key=lambda k: (order.index(k) if k in order else len(order), k))}
        print(f"{tag} stages (mean s): " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                     out["stages_mean_s"].items()))
        steps = [r["timings"]["denoise"] / r["steps"] for r in records
                 if r.get("steps") and "denoise" in r["timings"]]
        if steps:
            out["denoise_per_step_ms"] = statistics.mean(steps) * 1000
            print(f"{tag} step time: {out['denoise_per_step_ms']:.2f} ms (denoise stage / steps, "
                  f"mean; a batch's step serves all its jobs)")
    if gpu:
        pk = gpu.peak()
        if pk:
            out["vram_peak_mib"], out["vram_gpu"] = pk[1], pk[0]
            print(f"{tag} VRAM peak: {pk[1]} MiB on GPU {pk[0]} (nvidia-smi memory.used, 100 ms)")
    if server:
        out["server_metrics"] = server
        print(f"{tag} server memory: models {server.get('foley_models_used_bytes', 0) / 1e9:.2f} GB, "
              f"device {server.get('foley_device_memory_bytes', 0) / 1e9:.2f} GB (/metrics)")
    return out


def counts(spec, levels):
    if spec is None:
        return [max(8, 2 * c) for c in levels]
    n = [int(x) for x in spec.split(",")]
    if len(n) == 1:
        return n * len(levels)
    if len(n) != len(levels):
        raise SystemExit("--requests-per-level: one number, or one per --concurrency level")
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--foley", required=True, help="the foley binary (built with FOLEY_HTTP)")
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--clip", required=True, help="the video every request uploads (e.g. 10-s Y4M)")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--server-args", default="", help="more `foley serve` flags, one string")
    ap.add_argument("--concurrency", default="1,2,4,8")
    ap.add_argument("--requests-per-level", default=None,
                    help="N, or one per level (default max(8, 2*C))")
    ap.add_argument("--steps", type=int, default=0, help="denoising steps (0: the server's default)")
    ap.add_argument("--prompt", default="footsteps on gravel")
    ap.add_argument("--warm", type=int, default=1, help="requests before measuring (not counted)")
    ap.add_argument("--label", default="", help="prefix of every result line")
    ap.add_argument("--timeout", type=float, default=600, help="longest wait of one request, s")
    ap.add_argument("--ready-timeout", type=float, default=300)
    ap.add_argument("--server-log", help="the server's stderr (default: a temporary file, shown on failure)")
    ap.add_argument("--json", help="write every figure (and each latency) here")
    a = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # lines show up as they come, also through tee
    levels = [int(x) for x in a.concurrency.split(",")]
    per_level = counts(a.requests_per_level, levels)
    label = f"[{a.label}] " if a.label else ""

    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so the finally below stops the server.
    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    tmp = tempfile.mkdtemp(prefix="foley-serve-bench-")
    log = a.server_log or os.path.join(tmp, "server.log")
    server = gpu = None
    failed = True
    try:
        result = {"device": a.device, "server_args": a.server_args, "clip": a.clip,
                  "clip_bytes": os.path.getsize(a.clip), "bundle": a.bundle, "levels": []}
        if a.device == "cuda":
            if shutil.which("nvidia-smi"):
                card = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total",
                                       "--format=csv,noheader"], capture_output=True,
                                      text=True).stdout.strip()
                result["card"] = card
                print(f"{label}card: {card}")
                gpu = GpuMemory()
                gpu.got_first.wait(5)
                result["vram_before_mib"] = dict(gpu.first)
                print(f"{label}VRAM before the server: " +
                      ", ".join(f"GPU {k} {v} MiB" for k, v in sorted(gpu.first.items())))
            else:
                print(f"{label}nvidia-smi not found: no card name, no VRAM peak")
        args = [a.foley, "serve", "--model", a.bundle, "--device", a.device, "--host", "127.0.0.1",
                "--port", "0", "--data-dir", os.path.join(tmp, "data")] + shlex.split(a.server_args)
        print(f"{label}server: {' '.join(shlex.quote(x) for x in args[1:])}")
        t0 = time.perf_counter()
        server = Proc(args, dict(os.environ), "ready on", log=log, timeout=a.ready_timeout)
        result["ready_s"] = time.perf_counter() - t0
        print(f"{label}server ready in {result['ready_s']:.2f} s: "
              f"{server.lines[-1].strip() if server.lines else ''}")
        client = Client(server.port, a.clip, a.steps, a.prompt, a.timeout)
        print(f"{label}clip: {a.clip} ({result['clip_bytes'] / 1e6:.1f} MB upload), "
              f"steps {a.steps or 'server default'}")
        for i in range(a.warm):
            rec = client.run(10**6 + i)
            if rec["state"] != "done":
                raise RuntimeError(f"warm request {rec['state']}: {rec.get('error')}")
            result.setdefault("warm_s", []).append(rec["latency_s"])
            print(f"{label}warm request {i + 1}: {rec['latency_s']:.3f} s, audio "
                  f"{rec.get('audio_seconds') or 0:.2f} s, not counted")
        any_failed = False
        for c, n in zip(levels, per_level):
            if gpu:
                gpu.reset()
            records, errors, wall = run_level(client, c, n, 1000 * c)
            try:
                m = metrics(server.port)
            except (OSError, http.client.HTTPException):
                m = {}
            result["levels"].append(summarize(label, c, records, errors, wall, gpu, m))
            any_failed = any_failed or bool(errors)
        print(f"{label}summary: " + "; ".join(
            f"c={lv['concurrency']} {lv['clips_per_min']:.2f} clips/min p50 {lv.get('p50_s', 0):.2f} s "
            f"p99 {lv.get('p99_s', 0):.2f} s" for lv in result["levels"]))
        if gpu and gpu.peak(overall=True):
            idx, mib = gpu.peak(overall=True)
            base = gpu.first.get(idx, 0)
            result["vram_peak_mib"] = mib
            print(f"{label}VRAM peak over the run: {mib} MiB on GPU {idx} ({mib - base} MiB above "
                  "the reading before the server started)")
        if a.json:
            with open(a.json, "w") as f:
                json.dump(result, f, indent=1)
        failed = any_failed
    except KeyboardInterrupt:
        print(f"{label}interrupted", file=sys.stderr)
    except Exception as e:  # noqa: BLE001
        print(f"{label}error: {e}", file=sys.stderr)
    finally:
        if server:
            server.stop()
        if gpu:
            gpu.stop()
        if failed and os.path.exists(log):
            with open(log, errors="replace") as f:
                tail = f.read()[-3000:]
            if tail.strip():
                print(f"{label}server log (end):\n{tail}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
