"""Shared helpers of the benchmarks that drive `foley serve` / `foley worker` over HTTP
(bench/queue_bench.py, bench/serve_bench.py): start a process and wait for its ready line, stop
it, build a multipart upload, submit a generation. Standard library only.
"""

import ctypes
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time

_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def die_with_parent():
    """preexec_fn: the child gets SIGTERM when the benchmark dies, even by SIGKILL, so no server
    outlives it (and holds a GPU the next run needs)."""
    if _prctl:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Proc:
    """A child process whose stdout is read line by line on a thread (so it never blocks on a
    full pipe); the constructor waits for a line containing `ready` (up to `timeout` s) and
    takes the port from a "listening on http://127.0.0.1:PORT" line."""

    def __init__(self, args, env=None, ready=None, log=None, timeout=120):
        self.log = open(log, "w") if log else subprocess.DEVNULL
        self.lines = []  # every stdout line, in order
        self._new = queue.Queue()
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, env=env, text=True,
                                  preexec_fn=die_with_parent)
        threading.Thread(target=self._read, daemon=True).start()
        self.port = None
        end = time.time() + timeout
        while ready:
            try:
                line = self._new.get(timeout=max(0.01, end - time.time()))
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"{' '.join(args[:2])} was not ready within {timeout} s")
            if line is None:
                raise RuntimeError(f"{' '.join(args[:2])} exited (status {self.p.wait()}) before "
                                   "it was ready")
            if "listening on http://127.0.0.1:" in line:
                self.port = int(line.split("127.0.0.1:")[1].split()[0].rstrip(")/,"))
            if ready in line:
                return

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(line)
            self._new.put(line)
        self._new.put(None)

    def stop(self, wait=20):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(wait)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def multipart(fields, file_name, file_bytes, boundary="b0undary7e1f0c"):
    """(body, content type) of a form with text `fields` and the file part 'video'."""
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="video"; '
                 f'filename="{file_name}"\r\n\r\n'.encode() + file_bytes +
                 f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post_generation(port, body, content_type, timeout=60):
    """POST /v1/generations; returns (HTTP status, parsed JSON body, Retry-After or None)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", "/v1/generations", body, {"Content-Type": content_type})
        r = c.getresponse()
        data = json.loads(r.read() or b"{}")
        return r.status, data, r.getheader("Retry-After")
    finally:
        c.close()


def submit(port, clip, steps, seed, prompt="rain"):
    with open(clip, "rb") as f:
        video = f.read()
    body, ctype = multipart({"prompt": prompt, "steps": str(steps), "seed": str(seed)},
                            os.path.basename(clip), video)
    status, data, _ = post_generation(port, body, ctype, timeout=30)
    if status != 202:
        raise RuntimeError(f"submit: {status} {data}")
    return data["id"]
