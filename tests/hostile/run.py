#!/usr/bin/python3
"""Hostile media and abusive clients against the real `foley serve` (issue 17).

  run.py --foley BUILD/bin/foley --work-dir BUILD/tests/hostile [--source-dir REPO] [--keep]
         [--only NAME,NAME] [--budget SECONDS]

Makes (and caches under --work-dir) a tiny model bundle (scripts/make_tiny_models.py + `foley
convert --dtype f32`), generates a corpus of hostile media at run time (nothing big is committed),
starts `foley serve` on a free 127.0.0.1 port with a private --data-dir, and runs the cases
below. Every network operation is on loopback, every loop is bounded in count and in time, and
the server is always stopped (SIGTERM, then SIGKILL) on the way out.

Cases (each prints PASS / FAIL / PENDING lines; see docs/load-test.md for the spec they follow):
  corpus      hostile media and path-trick filenames: 4xx at submit, or accepted then "failed"
              with a 4xx-class code; never a 5xx, a hang or a crash; /health/live after each
  fields      invalid UTF-8 prompts, overflowing/garbage numbers: 400 naming the field, no job
  auth        `Authorization: bearer T` (lower-case scheme) accepted
  limits      POST with no length (411), Content-Length above the cap (413 before the body),
              chunked body growing past the cap (413 early)
  range       Range: bytes=0-99 on a finished job's audio: 206 with 100 bytes
  sse_cap     more /events streams than --max-streams: the excess get 503 + Retry-After
  burst       60 concurrent submissions against --queue-size 4: 202 or 429(+Retry-After) only,
              every 202 job finishes
  vanish      20 SSE clients and 5 POST /generate clients that disconnect: no thread/fd growth
  halfsent    8 POSTs that stall mid-body with --threads 16: probes still answer < 100 ms
  slowloris   200 slow-header connections: /health/live and /health/ready answer < 100 ms
  restart     kill -9 with jobs queued/running, restart on the same --data-dir: no file leaks

Exit status: 0 all checks passed (PENDING ones do not count), 1 a check failed, 77 a tool is
missing (ffmpeg CLI, python torch) outside CI; with CI=true a missing tool is a failure (1).
"""

import argparse
import collections
import ctypes
import hashlib
import http.client
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

SKIP = 77
TOKEN = "hostile-token-5f3a"
AUTH = {"Authorization": "Bearer " + TOKEN}
MAX_UPLOAD_MB = 2
QUEUE_SIZE = 4
HTTP_THREADS = 16
MAX_STREAMS = 4
IO_TIMEOUT = 10
PROBE_LIMIT_MS = float(os.environ.get("FOLEY_HOSTILE_PROBE_MS", "100"))
# Server growth allowed over the whole run (see docs/load-test.md for the reasoning).
RSS_GROWTH_LIMIT_MB = 128
THREAD_SLACK = 2
FD_SLACK = 4

IN_CI = os.environ.get("CI") == "true"
T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


# ---- results and figures --------------------------------------------------------------------------

class Results:
    def __init__(self):
        self.checks = []  # (case, verdict, name, detail)
        self.lock = threading.Lock()
        self.tried = 0
        self.by_status = collections.Counter()
        self.no_answer = collections.Counter()  # reset / timeout / refused, by kind
        self.accepted = set()   # ids that got 202
        self.killed = set()     # accepted ids on the server instance we kill -9 on purpose
        self.finished = {}      # id -> terminal state
        self.case = "setup"

    def check(self, name, ok, detail="", pending=False):
        verdict = "PENDING" if pending else ("PASS" if ok else "FAIL")
        with self.lock:
            self.checks.append((self.case, verdict, name, detail))
        log(f"  {verdict:7s} {self.case}/{name}" + (f": {detail}" if detail else ""))
        return ok

    def record(self, status, err=None):
        with self.lock:
            self.tried += 1
            if status is not None:
                self.by_status[status] += 1
            else:
                self.no_answer[err or "error"] += 1

    def failed(self):
        return [c for c in self.checks if c[1] == "FAIL"]


R = Results()


# ---- HTTP helpers (http.client for well-formed requests, raw sockets for abuse) --------------------

class Answer:
    def __init__(self, status=None, headers=None, body=b"", ms=0.0, err=None):
        self.status, self.headers, self.body, self.ms, self.err = status, headers or {}, body, ms, err

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8", "replace"))
        except ValueError:
            return {}

    def header(self, name):
        return self.headers.get(name.lower())

    def error_message(self):
        e = self.json().get("error", {}) if isinstance(self.json(), dict) else {}
        return f"{e.get('code', '')}: {e.get('message', '')}" if e else self.body[:200].decode("utf-8", "replace")

    def __repr__(self):
        if self.status is None:
            return f"<no answer: {self.err} after {self.ms:.0f} ms>"
        return f"<{self.status} {self.error_message()[:160]!r} {self.ms:.0f} ms>"


class Client:
    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, headers=None, timeout=20.0, auth=True, record=True):
        h = dict(AUTH) if auth else {}
        h.update(headers or {})
        h.setdefault("Connection", "close")
        t = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            a = Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, data,
                       (time.monotonic() - t) * 1000)
        except socket.timeout:
            a = Answer(ms=(time.monotonic() - t) * 1000, err="timeout")
        except ConnectionResetError:
            a = Answer(ms=(time.monotonic() - t) * 1000, err="reset")
        except ConnectionRefusedError:
            a = Answer(ms=(time.monotonic() - t) * 1000, err="refused")
        except (OSError, http.client.HTTPException) as e:
            a = Answer(ms=(time.monotonic() - t) * 1000, err=type(e).__name__ + ": " + str(e)[:80])
        finally:
            conn.close()
        if record:
            R.record(a.status, a.err)
        return a

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def submit(self, video, filename=b"clip.mp4", fields=None, path="/v1/generations", **kw):
        body, ctype = multipart(fields if fields is not None else {"prompt": "rain", "steps": "1"},
                                video, filename)
        a = self.request("POST", path, body=body, headers={"Content-Type": ctype}, **kw)
        if a.status == 202:
            jid = a.json().get("id")
            if jid:
                with R.lock:
                    R.accepted.add(jid)
        return a

    def wait_job(self, jid, deadline_s=60.0):
        """Polls until a terminal state; returns the job JSON, or {} on a timeout / 404."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            a = self.get("/v1/generations/" + jid, timeout=5, record=False)
            if a.status == 200:
                j = a.json()
                if j.get("state") in ("succeeded", "failed", "cancelled"):
                    with R.lock:
                        R.finished[jid] = j["state"]
                    return j
            elif a.status == 404:
                return {"state": "gone"}
            time.sleep(0.05)
        return {}

    def metric(self, name_and_labels):
        a = self.get("/metrics", timeout=5, record=False)
        if a.status != 200:
            return None
        for line in a.body.decode("utf-8", "replace").splitlines():
            if line.startswith(name_and_labels + " "):
                return float(line.split()[-1])
        return 0.0

    def probe(self, path, auth=False, timeout=2.0):
        """One request on a fresh connection; the time includes connect."""
        return self.get(path, auth=auth, timeout=timeout)


def multipart(fields, video, filename, boundary=b"hostileBoundary7MA4YWxkTrZu0gW"):
    out = []
    for name, value in fields.items():
        name = name.encode() if isinstance(name, str) else name
        value = value.encode() if isinstance(value, str) else value
        out.append(b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"" + name +
                   b"\"\r\n\r\n" + value + b"\r\n")
    if video is not None:
        out.append(b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"video\"; "
                   b"filename=\"" + filename + b"\"\r\nContent-Type: application/octet-stream\r\n\r\n" +
                   video + b"\r\n")
    out.append(b"--" + boundary + b"--\r\n")
    return b"".join(out), "multipart/form-data; boundary=" + boundary.decode()


def raw_connect(port, timeout=2.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_head(sock, timeout):
    """Reads until the end of the response head; returns (status, headers, rest) or (None, err, b"")."""
    return read_head_rest(sock, b"", time.monotonic() + timeout)


def read_head_rest(sock, buf, end):
    while b"\r\n\r\n" not in buf:
        left = end - time.monotonic()
        if left <= 0:
            return None, "timeout", buf
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            return None, "timeout", buf
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return None, "reset", buf
        except OSError as e:
            return None, str(e), buf
        if not chunk:
            return None, "closed", buf
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if not m:
        return None, "garbage status line " + lines[0][:60], rest
    if m.group(1) == "100":
        # 100 Continue invites the body; report it as such (the caller sends no more bytes).
        st, hdr, rest = read_head_rest(sock, rest, end)
        return None, "100 Continue, then " + (str(st) if st else str(hdr)), rest
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(m.group(1)), headers, rest


def closed_within(sock, timeout):
    """True when the peer closes (EOF or reset) within timeout; reads and drops any data."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([sock], [], [], max(0.0, end - time.monotonic()))
        if not r:
            return False
        try:
            if not sock.recv(65536):
                return True
        except OSError:
            return True
    return False


def rst_close(sock):
    """Closes with a reset (SO_LINGER 0), like a client that crashed."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


# ---- the server process -------------------------------------------------------------------------

def _pdeathsig():
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Server:
    def __init__(self, foley, bundle, data_dir, log_dir, name, extra):
        self.args = [foley, "serve", "--model", bundle, "--host", "127.0.0.1", "--port", "0",
                     "--data-dir", data_dir] + extra
        self.log_dir, self.name = log_dir, name
        self.proc = None
        self.port = None
        self.lines = []
        self.cond = threading.Condition()

    def start(self, timeout=120):
        env = dict(os.environ)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        env.setdefault("FOLEY_THREADS", "2")
        self.stderr = open(os.path.join(self.log_dir, self.name + ".stderr"), "wb")
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self.stderr,
                                     stdin=subprocess.DEVNULL, env=env, preexec_fn=_pdeathsig)
        threading.Thread(target=self._reader, daemon=True).start()
        end = time.monotonic() + timeout
        with self.cond:
            while time.monotonic() < end and self.proc.poll() is None:
                for line in self.lines:
                    m = re.search(r"ready on http://127\.0\.0\.1:(\d+)", line)
                    if m:
                        self.port = int(m.group(1))
                        return True
                self.cond.wait(0.2)
        return False

    def _reader(self):
        with open(os.path.join(self.log_dir, self.name + ".stdout"), "w") as out:
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace")
                out.write(line)
                out.flush()
                with self.cond:
                    self.lines.append(line)
                    self.cond.notify_all()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20):
        """SIGTERM (drain), SIGKILL if it does not exit; returns the exit code or a note."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                return "killed after %ds" % timeout
        return self.proc.returncode

    def kill9(self):
        if self.alive():
            self.proc.kill()
        self.proc.wait(10)

    def stderr_tail(self, n=15):
        try:
            with open(os.path.join(self.log_dir, self.name + ".stderr"), "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    # /proc figures
    def _status(self, key):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])  # kB
        except OSError:
            pass
        return 0

    def rss_mb(self):
        return self._status("VmRSS") / 1024.0

    def reset_peak(self):
        """Resets VmHWM to the current RSS (Linux: 5 > /proc/PID/clear_refs), so a case's peak is its own."""
        try:
            with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def hwm_mb(self):
        return self._status("VmHWM") / 1024.0

    def threads(self):
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/task"))
        except OSError:
            return -1

    def fds(self):
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except OSError:
            return -1

    def figures(self):
        return {"rss_mb": round(self.rss_mb(), 1), "hwm_mb": round(self.hwm_mb(), 1),
                "threads": self.threads(), "fds": self.fds()}


def files_under(d):
    out = []
    for root, _, files in os.walk(d):
        out += [os.path.join(root, f) for f in files]
    return sorted(out)


# ---- assets: tiny model bundle (cached) and hostile media (per run) -------------------------------

def file_key(*paths):
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def run(cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({r.returncode}):\n" + r.stdout.decode("utf-8", "replace")[-2000:])
    return r.stdout


def make_bundle(args):
    """models-<script key>/ from make_tiny_models.py; tiny-<model+cli key>.safetensors from convert."""
    script = os.path.join(args.source_dir, "scripts", "make_tiny_models.py")
    models = os.path.join(args.work_dir, "models-" + file_key(script))
    if not os.path.exists(os.path.join(models, "done")):
        partial = models + ".partial-%d" % os.getpid()
        shutil.rmtree(partial, ignore_errors=True)
        log("making the tiny model (python3-torch, once per make_tiny_models.py)")
        run([args.python, script, partial, "--seed", "3"])
        open(os.path.join(partial, "done"), "w").close()
        shutil.rmtree(models, ignore_errors=True)
        os.rename(partial, models)
    bundle = os.path.join(args.work_dir, "tiny-" + file_key(script, args.foley) + ".safetensors")
    if not os.path.exists(bundle):
        for old in os.listdir(args.work_dir):  # bundles of older binaries
            if old.startswith("tiny-") and old.endswith(".safetensors"):
                os.unlink(os.path.join(args.work_dir, old))
        log("converting the tiny model into a bundle")
        run([args.foley, "convert", "--model-dir", models, "--dtype", "f32", "-o", bundle + ".tmp"])
        os.rename(bundle + ".tmp", bundle)
    return bundle


def ffmpeg(*a):
    run(["ffmpeg", "-nostdin", "-y", "-v", "error"] + list(a))


def mp4_boxes(data):
    """Top-level boxes: list of (type, offset, size)."""
    out, i = [], 0
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        if size == 1:
            size = struct.unpack(">Q", data[i + 8:i + 16])[0]
        if size < 8 or i + size > len(data):
            break
        out.append((kind, i, size))
        i += size
    return out


def gif_bomb(frames=30, side=8000):
    """A GIF89a whose logical screen is side x side; each frame is a 1x1 image (~20 bytes)."""
    g = bytearray(b"GIF89a" + struct.pack("<HHBBB", side, side, 0x80, 0, 0))
    g += b"\x00\x00\x00\xff\xff\xff"  # 2-colour global table
    g += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for _ in range(frames):
        g += b"\x21\xf9\x04\x00\x04\x00\x00\x00"  # graphic control: 40 ms
        g += b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
        # LZW, min code size 2: clear(4), index 0, end(5) in 3-bit codes -> 0x44 0x01
        g += b"\x02\x02\x44\x01\x00"
    g += b"\x3b"
    return bytes(g)


def y4m(width, height, fps, frames=1, frame_bytes=16):
    head = f"YUV4MPEG2 W{width} H{height} F{fps} Ip A1:1 C420jpeg\n".encode()
    return head + b"".join(b"FRAME\n" + bytes(frame_bytes) for _ in range(frames))


def patch_mp4_dims(data, w, h):
    """Rewrites the width/height of tkhd (16.16) and of the avc1 sample entry."""
    d = bytearray(data)
    i = d.find(b"tkhd")
    while i >= 0:
        ver = d[i + 4]
        off = i + 4 + (84 if ver == 0 else 96) - 8  # width, height: last 8 bytes of the box body
        d[off:off + 8] = struct.pack(">II", w << 16, h << 16)
        i = d.find(b"tkhd", i + 4)
    j = d.find(b"avc1")
    if j >= 0:
        d[j + 4 + 24:j + 4 + 28] = struct.pack(">HH", w & 0xFFFF, h & 0xFFFF)
    return bytes(d)


def make_media(d, canary_port):
    """The corpus: name -> (bytes, filename, may_succeed, note)."""
    clip = os.path.join(d, "clip.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=128x96:r=25:d=1", "-pix_fmt", "yuv420p", clip)
    ts = os.path.join(d, "clip.ts")
    ffmpeg("-i", clip, "-c", "copy", "-f", "mpegts", ts)
    single = os.path.join(d, "single.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=128x96:r=25", "-frames:v", "1", "-pix_fmt", "yuv420p", single)
    audio = os.path.join(d, "audio.mp4")
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=1", "-c:a", "aac", "-f", "mp4", audio)
    png = os.path.join(d, "image.png")
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48", "-frames:v", "1", png)
    fps = os.path.join(d, "fps1000.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=32x32:r=1000:d=1", "-pix_fmt", "yuv420p", fps)
    thin = os.path.join(d, "thin.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=8192x16:r=25:d=1", "-pix_fmt", "yuv420p", thin)

    rd = lambda p: open(p, "rb").read()
    good = rd(clip)
    boxes = {k: (o, s) for k, o, s in mp4_boxes(good)}
    corrupt = bytearray(good)
    if b"mdat" in boxes:
        o, s = boxes[b"mdat"]
        rng = random.Random(17)
        for k in range(o + 16, o + s, 7):  # every 7th payload byte, headers of the box kept
            corrupt[k] = rng.randrange(256)
    rng = random.Random(5)
    hls = lambda *uris: ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n" +
                         "".join(f"#EXTINF:1.0,\n{u}\n" for u in uris) + "#EXT-X-ENDLIST\n").encode()
    c = {
        "zero_bytes": (b"", b"empty.mp4", False, "0-byte upload"),
        "random_bytes": (bytes(rng.randrange(256) for _ in range(65536)), b"random.mp4", False, ""),
        "text_as_mp4": (b"this is a text file, not a video\n" * 20, b"notes.mp4", False, ""),
        "truncated_half": (good[:len(good) // 2], b"truncated.mp4", False, "first half of a valid MP4"),
        "corrupt_payload": (bytes(corrupt), b"corrupt.mp4", True, "moov intact, mdat scrambled"),
        "gif_8000x8000": (gif_bomb(), b"bomb.gif", False, "30 frames, 8000x8000 canvas"),
        "y4m_huge_dims": (y4m(99999, 99999, "25:1"), b"huge.y4m", False, "declares 99999x99999"),
        "y4m_absurd_fps": (y4m(64, 64, "2000000000:1", frames=3, frame_bytes=64 * 64 * 3 // 2),
                           b"fast.y4m", True, "2e9 fps"),
        "y4m_zero_fps": (y4m(64, 64, "0:0", frames=3, frame_bytes=64 * 64 * 3 // 2), b"zero.y4m",
                         True, "0:0 fps"),
        "mp4_1000fps": (rd(fps), b"fps1000.mp4", True, "1000 fps, 32x32"),
        "mp4_8192x16": (rd(thin), b"thin.mp4", True, "8192x16"),
        "mp4_header_65535": (patch_mp4_dims(good, 65535, 65535), b"dims.mp4", True,
                             "tkhd/avc1 say 65535x65535"),
        "single_frame": (rd(single), b"single.mp4", True, ""),
        "audio_only": (rd(audio), b"audio.mp4", False, "AAC in MP4, no video stream"),
        "png_image": (rd(png), b"image.png", True, ""),
        "hls_port1": (hls("http://127.0.0.1:1/x.ts"), b"list.m3u8", False, ""),
        "hls_passwd": (hls("file:///etc/passwd"), b"list.m3u8", False, ""),
        "hls_canary": (hls(f"http://127.0.0.1:{canary_port}/x.ts"), b"list.m3u8", False,
                       "a loopback listener counts connections"),
        "hls_local_ts": (hls("file://" + ts), b"list.m3u8", False,
                         "points at a valid local .ts: success would be a local file read"),
        "hls_as_mp4": (hls("file:///etc/passwd"), b"list.mp4", False, "playlist named .mp4"),
        "ffconcat_passwd": (b"ffconcat version 1.0\nfile '/etc/passwd'\n", b"list.ffconcat", False, ""),
        "ffconcat_local_mp4": (f"ffconcat version 1.0\nfile '{clip}'\n".encode(), b"list.mp4", False,
                               "points at a valid local MP4: success would be a local file read"),
        "name_dotdot": (good, b"../../etc/passwd", True, "valid clip, filename ../../etc/passwd"),
        "name_dotdot_escape": (good, b"../../../escape-probe.mp4", True, "valid clip"),
        "name_long": (good, b"a" * 5000 + b".mp4", True, "5000-byte filename"),
        "name_nul": (good, b"clip\x00.mp4", True, "NUL inside the filename"),
        "name_only_nul": (good, b"\x00", True, "filename is one NUL"),
        "name_slash_abs": (good, b"/etc/passwd", True, "absolute filename"),
        "name_crlf": (good, b"a\r\nContent-Type: text/evil\r\n.mp4", True, "CRLF in filename"),
        "name_empty": (good, b"", False, "empty filename (no file)"),
    }
    return good, c


# ---- the cases ----------------------------------------------------------------------------------

class Canary:
    """A loopback listener that counts connections (nothing should ever dial it)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                self.hits += 1
                c.close()
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self):
        self.stop = True
        self.t.join(2)
        self.sock.close()


def health_ok(cl, srv):
    a = cl.probe("/health/live", timeout=3)
    return srv.alive() and a.status == 200, a


def case_corpus(cl, srv, corpus, canary, run_dir):
    sandbox_before = set(files_under(run_dir))
    for name, (data, filename, may_succeed, note) in corpus.items():
        srv.reset_peak()
        hwm0 = srv.rss_mb()
        a = cl.submit(data, filename=filename, fields={"prompt": "x", "steps": "1"}, timeout=30)
        outcome, ok = "", False
        if a.status is None:
            outcome = f"no answer ({a.err}, {a.ms:.0f} ms)"
        elif a.status >= 500:
            outcome = f"{a.status} {a.error_message()[:100]}"
        elif a.status == 202:
            jid = a.json().get("id", "")
            j = cl.wait_job(jid, 60)
            st = j.get("state")
            code = (j.get("error") or {}).get("code", "")
            outcome = f"202 then {st or 'no end within 60 s'}" + (f" ({code})" if code else "")
            if st == "succeeded":
                ok = may_succeed
                if not ok:
                    outcome += " -- must not be processed"
            elif st in ("failed", "cancelled"):
                ok = code not in ("", "internal")
        elif 400 <= a.status < 500 and a.status not in (401, 429):
            outcome = f"{a.status} {a.error_message()[:100]}"
            ok = True
        else:
            outcome = f"{a.status} {a.error_message()[:100]}"
        live, la = health_ok(cl, srv)
        if not live:
            outcome += f"; /health/live after: {la!r}, process {'alive' if srv.alive() else 'DEAD'}"
        growth = srv.hwm_mb() - hwm0
        extra = f"; peak RSS +{growth:.0f} MB" if growth > 8 else ""
        R.check(name, ok and live, f"{outcome}{extra}" + (f"  [{note}]" if note else ""))
        if not srv.alive():
            return
    R.check("no_outbound_connection", canary.hits == 0,
            f"the loopback canary saw {canary.hits} connection(s) from HLS segment URLs")
    stray = sorted(set(files_under(run_dir)) - sandbox_before)
    stray = [p for p in stray if "/data/" not in p and not p.endswith((".stdout", ".stderr"))]
    R.check("no_file_outside_data_dir", not stray, ", ".join(stray[:5]) or "none")


def case_fields(cl, srv, clip, openapi):
    before = cl.metric('foley_jobs_total{state="submitted"}')
    utf8 = {"prompt": [b"\xff\xfe", b"ab\xc0\xafcd", b"rain \xe2\x82", b"\xed\xa0\x80",
                       b"\xf4\x90\x80\x80", b"\x80"],
            "negative_prompt": [b"\xff", b"noise \xc3"]}
    cases = []
    for field, values in utf8.items():
        for v in values:
            f = {"prompt": "rain", "steps": "1"}
            f[field] = v
            cases.append((f"utf8_{field}_{v.hex()}", field, f))
    numbers = [("steps", "9999999999999999999"), ("steps", "99999999999999999999999"),
               ("steps", "1.5"), ("steps", "-1"), ("steps", "0"), ("steps", "201"), ("steps", "abc"),
               ("steps", ""), ("steps", " 2"), ("seed", "-1"), ("seed", "18446744073709551616"),
               ("seed", "1e3"), ("guidance", "1e999"), ("guidance", "nan"), ("guidance", "-inf"),
               ("guidance", "abc"), ("max_seconds", "nan"), ("max_seconds", "inf"),
               ("max_seconds", "-1"), ("max_seconds", "0"), ("max_seconds", "1e-999"),
               ("format", "mp3"), ("format", "wav\x00"), ("format", "")]
    for field, v in numbers:
        f = {"prompt": "rain", "steps": "1"}
        f[field] = v
        cases.append((f"{field}={v!r}", field, f))
    for name, field, f in cases:
        a = cl.submit(clip, fields=f, timeout=20)
        msg = a.error_message()
        named = re.search(r"(?<![A-Za-z_])" + re.escape(field) + r"(?![A-Za-z_])", msg) is not None
        ok = a.status == 400 and named
        R.check(name, ok, repr(a) if not ok else f"400 {msg[:90]}")
        if a.status == 202:  # do not leave it queued behind later cases
            cl.wait_job(a.json().get("id", ""), 30)
    if "sample_format" in openapi:
        for v in ["nonsense", "f64", ""]:
            a = cl.submit(clip, fields={"prompt": "rain", "steps": "1", "sample_format": v})
            R.check(f"sample_format={v!r}", a.status == 400 and "sample_format" in a.error_message(), repr(a))
            if a.status == 202:
                cl.wait_job(a.json().get("id", ""), 30)
    else:
        R.check("sample_format", False, "the server's openapi.json has no sample_format field", pending=True)
    # JSON bodies: the same fields go through nlohmann's number handling.
    # A number literal beyond double range fails nlohmann's parse itself: "body" is a fair name there.
    for body, field in [(b'{"prompt":"x","steps":9999999999999999999}', "steps"),
                        (b'{"prompt":"x","steps":1e999}', "steps|body"),
                        (b'{"prompt":"x","steps":-5}', "steps"),
                        (b'{"prompt":"x","seed":-1}', "seed"),
                        (b'{"prompt":"x","seed":1.5}', "seed"),
                        (b'{"prompt":"x","guidance":1e400}', "guidance|body"),
                        (b'{"prompt":"x","max_seconds":"nan"}', "max_seconds"),
                        (b'{"prompt":"x","steps":[1]}', "steps"),
                        (b'{"prompt":"\xff"}', "prompt|body")]:
        a = cl.request("POST", "/v1/generations", body=body, headers={"Content-Type": "application/json"})
        msg = a.error_message()
        ok = a.status == 400 and any(f in msg for f in field.split("|"))
        R.check("json " + body.decode("latin-1")[:48], ok, repr(a))
    after = cl.metric('foley_jobs_total{state="submitted"}')
    R.check("no_job_created", before is not None and before == after,
            f"foley_jobs_total{{state=\"submitted\"}} {before} -> {after}")


def case_auth(cl):
    a = cl.get("/metrics", auth=False)
    R.check("no_token_401", a.status == 401, repr(a))
    a = cl.get("/metrics", auth=False, headers={"Authorization": "Bearer wrong"})
    R.check("wrong_token_401", a.status == 401, repr(a))
    a = cl.get("/metrics", auth=False, headers={"Authorization": "bearer " + TOKEN})
    R.check("lowercase_bearer_accepted", a.status == 200, repr(a))


def stream_body(sock, deadline, total, chunk, chunked, pause=0.0):
    """Sends up to `total` body bytes until the server answers; returns (bytes sent, answer-or-None,
    error). Non-blocking: a server that stops reading does not block the harness."""
    sock.setblocking(False)
    sent, payload = 0, b"\x7f" * chunk
    piece = (b"%x\r\n" % chunk + payload + b"\r\n") if chunked else payload
    pending = b""
    while time.monotonic() < deadline and sent < total:
        r, w, _ = select.select([sock], [sock], [], 0.05)
        if r:
            return sent, True, ""
        if w:
            if not pending:
                pending = piece
            try:
                n = sock.send(pending)
                pending = pending[n:]
                if not pending:
                    sent += chunk
            except BlockingIOError:
                pass
            except OSError as e:
                return sent, False, type(e).__name__
        if pause:
            time.sleep(pause)
    return sent, False, "" if sent >= total else "deadline"


def case_limits(cl, srv):
    cap = MAX_UPLOAD_MB << 20
    port = cl.port
    head = lambda extra: (b"POST /v1/generations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                          TOKEN.encode() + b"\r\nContent-Type: multipart/form-data; boundary=b\r\n" +
                          extra + b"\r\n")

    # (1) neither Content-Length nor chunked, bytes follow: 411 (or 400) at once, then closed.
    srv.reset_peak()
    hwm0 = srv.rss_mb()
    s = raw_connect(port)
    t = time.monotonic()
    s.sendall(head(b""))
    sent, answered, err = stream_body(s, t + 4, 32 << 20, 65536, False)
    s.setblocking(True)
    st, hdr, _ = read_head(s, 3)
    if st is None and err:
        hdr = f"{hdr} (sending: {err})"
    ms = (time.monotonic() - t) * 1000
    closed = closed_within(s, 2) if st is not None else False
    s.close()
    R.record(st, None if st else str(hdr))
    time.sleep(0.5)  # whatever the server does with the bytes once the client is gone counts too
    growth = srv.hwm_mb() - hwm0
    R.check("no_length_411", st in (411, 400) and ms < 2000 and closed,
            f"status {st if st else hdr} after {ms:.0f} ms, {sent >> 20} MB sent meanwhile, "
            f"connection {'closed' if closed else 'left open'}")
    R.check("no_length_rss", growth < 16, f"peak RSS +{growth:.1f} MB while {sent >> 20} MB were offered")

    # (2) Content-Length above the cap: 413 before any body byte is sent.
    s = raw_connect(port)
    t = time.monotonic()
    s.sendall(head(b"Content-Length: %d\r\n" % (cap * 32)))
    st, hdr, _ = read_head(s, 3)
    ms = (time.monotonic() - t) * 1000
    rst_close(s)
    R.record(st, None if st else str(hdr))
    R.check("content_length_over_cap_413", st == 413 and ms < 1000,
            f"status {st if st else hdr} after {ms:.0f} ms with no body sent")

    # (2b) the same with an Expect: 100-continue client (curl does this for big uploads).
    s = raw_connect(port)
    t = time.monotonic()
    s.sendall(head(b"Content-Length: %d\r\nExpect: 100-continue\r\n" % (cap * 32)))
    st, hdr, _ = read_head(s, 3)
    ms = (time.monotonic() - t) * 1000
    rst_close(s)
    R.record(st, None if st else str(hdr))
    R.check("expect_100_over_cap_413", st == 413 and ms < 1000, f"status {st if st else hdr} after {ms:.0f} ms")

    # (3) chunked body that grows past the cap: 413 while it is still being sent.
    srv.reset_peak()
    hwm0 = srv.rss_mb()
    s = raw_connect(port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    t = time.monotonic()
    s.sendall(head(b"Transfer-Encoding: chunked\r\n"))
    sent, answered, err = stream_body(s, t + 6, cap * 8, 65536, True)
    s.setblocking(True)
    st, hdr, _ = read_head(s, 3)
    if st is None:
        hdr = f"{hdr} (sending: {err or 'the whole 8x-cap body went in unanswered'})"
    ms = (time.monotonic() - t) * 1000
    rst_close(s)
    R.record(st, None if st else str(hdr))
    time.sleep(0.5)
    R.check("chunked_over_cap_413", st == 413,
            f"status {st if st else hdr} after {ms:.0f} ms, {sent / (1 << 20):.1f} MB sent "
            f"(cap {MAX_UPLOAD_MB} MB, the terminating chunk never sent)")
    R.check("chunked_rss", srv.hwm_mb() - hwm0 < 16, f"peak RSS +{srv.hwm_mb() - hwm0:.1f} MB")
    live, la = health_ok(cl, srv)
    R.check("live_after_limits", live, repr(la))


def case_range(cl, jid):
    a = cl.get(f"/v1/generations/{jid}/audio", headers={"Range": "bytes=0-99"})
    R.check("range_0_99_206", a.status == 206 and len(a.body) == 100,
            f"{a.status}, {len(a.body)} bytes, Content-Range {a.header('content-range')!r}")
    whole = cl.get(f"/v1/generations/{jid}/audio")
    if a.status == 206 and whole.status == 200:
        R.check("range_bytes_match", a.body == whole.body[:100], "first 100 bytes of the whole file")


def open_stream(port, jid, timeout=1.5):
    s = raw_connect(port)
    s.sendall(f"GET /v1/generations/{jid}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              f"Authorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n".encode())
    st, hdr, rest = read_head(s, timeout)
    R.record(st, None if st else str(hdr))
    return s, st, hdr


def long_job(cl, clip, steps="200"):
    a = cl.submit(clip, fields={"prompt": "long", "steps": steps}, timeout=20)
    return a.json().get("id", "") if a.status == 202 else ""


def cancel(cl, jid):
    if jid:
        cl.request("DELETE", "/v1/generations/" + jid, timeout=5)
        cl.wait_job(jid, 30)


def case_sse_cap(cl, clip, have_flag):
    if not have_flag:
        R.check("streams_over_cap_503", False, "the binary has no --max-streams flag yet", pending=True)
        return
    jid = long_job(cl, clip)
    if not jid:
        R.check("streams_over_cap_503", False, "could not submit the job to stream")
        return
    socks, answers = [], []
    for _ in range(MAX_STREAMS + 3):
        s, st, hdr = open_stream(cl.port, jid)
        socks.append(s)
        answers.append((st, hdr.get("retry-after") if isinstance(hdr, dict) else hdr))
    n200 = sum(1 for st, _ in answers if st == 200)
    over = [x for x in answers if x[0] != 200]
    ok = n200 == MAX_STREAMS and len(over) == 3 and all(st == 503 and ra for st, ra in over)
    R.check("streams_over_cap_503", ok, f"cap {MAX_STREAMS}: answers {answers}")
    for s in socks:
        s.close()
    cancel(cl, jid)


def case_burst(cl, clip, n=60):
    barrier = threading.Barrier(n)
    answers = [None] * n

    def one(i):
        try:
            barrier.wait(10)
        except threading.BrokenBarrierError:
            pass
        answers[i] = cl.submit(clip, fields={"prompt": "burst", "steps": "1"}, timeout=30)

    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    got = collections.Counter()
    bad = []
    ids = []
    for a in answers:
        if a is None:
            got["thread stuck"] += 1
            continue
        got[a.status if a.status else a.err] += 1
        if a.status == 202:
            ids.append(a.json().get("id"))
        elif a.status == 429:
            ra = a.header("retry-after") or ""
            if not ra.isdigit() or int(ra) < 1:
                bad.append(f"429 without a usable Retry-After ({ra!r})")
        else:
            bad.append(repr(a) + (f" Retry-After {a.header('retry-after')!r}" if a.status else ""))
    R.check("only_202_or_429", not bad, f"{dict(got)}" + (f"; {bad[:3]}" if bad else ""))
    states = collections.Counter(cl.wait_job(j, 90).get("state", "lost") for j in ids)
    R.check("every_202_finishes", states.get("lost", 0) == 0 and states.get("gone", 0) == 0,
            f"{len(ids)} accepted: {dict(states)}")


def settle(srv, base, seconds=12):
    """Waits until threads and fds are back within slack of `base` (or the time is up)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if srv.threads() <= base["threads"] + THREAD_SLACK and srv.fds() <= base["fds"] + FD_SLACK:
            break
        time.sleep(0.25)
    return srv.figures()


def case_vanish(cl, srv, clip):
    base = srv.figures()
    jid = long_job(cl, clip)
    if not jid:
        R.check("vanish_setup", False, "could not submit the job to stream")
        return
    streams = collections.Counter()
    for i in range(20):
        try:
            s, st, hdr = open_stream(cl.port, jid, timeout=1.0)
            streams[st if st else hdr] += 1
            if st == 200:
                select.select([s], [], [], 0.2)  # the first event, or not
            (rst_close if i % 2 else socket.socket.close)(s)
        except OSError as e:
            streams[type(e).__name__] += 1
    body, ctype = multipart({"prompt": "gone", "steps": "2"}, clip, b"clip.mp4")
    req = (b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + TOKEN.encode() +
           b"\r\nContent-Type: " + ctype.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body))
    for i in range(5):
        try:
            s = raw_connect(cl.port)
            if i < 2:
                s.sendall(req + body)  # whole request, then gone before the answer
                time.sleep(0.05)
            else:
                s.sendall(req + body[:len(body) // 2])  # gone mid-upload
            R.record(None, "client vanished (on purpose)")
            (rst_close if i % 2 else socket.socket.close)(s)
        except OSError:
            pass
    cancel(cl, jid)
    # Every job (the two whole /generate requests included) must end: queue and running at 0.
    end = time.monotonic() + 60
    while time.monotonic() < end:
        q = cl.metric('foley_jobs{state="queued"}')
        r = cl.metric('foley_jobs{state="running"}')
        if q == 0 and r == 0:
            break
        time.sleep(0.2)
    after = settle(srv, base)
    ok = (after["threads"] <= base["threads"] + THREAD_SLACK and after["fds"] <= base["fds"] + FD_SLACK)
    R.check("no_thread_fd_growth", ok,
            f"SSE opens {dict(streams)}; threads {base['threads']} -> {after['threads']}, "
            f"fds {base['fds']} -> {after['fds']} (slack {THREAD_SLACK}/{FD_SLACK})")
    live, la = health_ok(cl, srv)
    R.check("live_after_vanish", live, repr(la))


def probe_loop(cl, paths, seconds, interval=0.1):
    """Probes the paths in turn from fresh connections; returns {path: [ms or None]}."""
    out = {p: [] for p, _ in paths}
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        p, auth = paths[i % len(paths)]
        a = cl.probe(p, auth=auth, timeout=2.0)
        out[p].append(a.ms if a.status == 200 else None)
        i += 1
        time.sleep(interval)
    return out


def report_probes(name, out):
    lines, ok = [], True
    for p, v in out.items():
        good = [x for x in v if x is not None]
        failed = len(v) - len(good)
        mx = max(good) if good else float("nan")
        slow = sum(1 for x in good if x >= PROBE_LIMIT_MS)
        ok = ok and failed == 0 and slow == 0 and len(v) > 0
        lines.append(f"{p}: n={len(v)} p50={pct(good, 0.5):.1f} ms max={mx:.1f} ms"
                     + (f" >={PROBE_LIMIT_MS:.0f}ms:{slow}" if slow else "") + (f" no-answer(2s):{failed}" if failed else ""))
    R.check(name, ok, "; ".join(lines))


def case_halfsent(cl, srv, jid):
    socks = []
    body_part = b"\x7f" * (100 << 10)
    for _ in range(8):
        try:
            s = raw_connect(cl.port)
            s.sendall(b"POST /v1/generations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                      TOKEN.encode() + b"\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                      b"Content-Length: 1048576\r\n\r\n" + body_part)
            socks.append(s)
        except OSError:
            pass
    R.tried += len(socks)
    time.sleep(0.3)
    out = probe_loop(cl, [("/health/live", False), (f"/v1/generations/{jid}", True), ("/metrics", True)], 4.0)
    report_probes("probes_under_100ms", out)
    for s in socks:
        rst_close(s)


def case_slowloris(cl, srv, n=200, seconds=8.0):
    socks = []
    for _ in range(n):
        try:
            socks.append(raw_connect(cl.port, timeout=1.0))
        except OSError:
            break
    R.tried += len(socks)
    header = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 64
    stop = threading.Event()

    def trickle():
        k = 0
        while not stop.is_set() and k < len(header):
            for s in socks:
                try:
                    s.send(header[k:k + 1], socket.MSG_DONTWAIT)
                except OSError:
                    pass
            k += 1
            stop.wait(1.0)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    time.sleep(1.2)
    fig = srv.figures()
    out = probe_loop(cl, [("/health/live", False), ("/health/ready", False)], seconds)
    stop.set()
    t.join(3)
    R.check("connections_held", len(socks) == n, f"{len(socks)} of {n} slow connections open; "
            f"server threads {fig['threads']}, fds {fig['fds']}")
    report_probes("probes_under_100ms", out)
    for s in socks:
        rst_close(s)
    time.sleep(0.5)
    live, la = health_ok(cl, srv)
    R.check("live_after_slowloris", live, repr(la))


def case_restart(args, srv_factory, srv, cl, clip, data_dir, finished_id):
    ids = [long_job(cl, clip)]
    for _ in range(3):
        ids.append(long_job(cl, clip, steps="50"))
    ids = [i for i in ids if i]
    end = time.monotonic() + 20
    while time.monotonic() < end:
        if cl.get(f"/v1/generations/{ids[0]}", record=False).json().get("state") == "running":
            break
        time.sleep(0.05)
    before = files_under(data_dir)
    with R.lock:
        R.killed.update(ids)
    # A file no job refers to, as a crash between writing a result and journaling it leaves.
    stray = os.path.join(data_dir, "results", "stray.wav")
    with open(stray, "w") as f:
        f.write("x")
    srv.kill9()
    log(f"  killed -9 with {len(ids)} jobs queued/running; files in the data dir: {len(before)}")
    srv2 = srv_factory("serve-restarted")
    if not srv2.start():
        R.check("restart_ready", False, "the restarted server did not become ready:\n" + srv2.stderr_tail())
        return srv2
    cl2 = Client(srv2.port)
    # The journal (SQLite in the data dir) brings every accepted job back: finished ones are
    # served, queued and interrupted ones run again.
    known = collections.Counter(cl2.get(f"/v1/generations/{j}").status for j in ids + [finished_id])
    R.check("old_jobs_known", set(known) == {200}, f"statuses of the old ids after the restart: {dict(known)}")
    cancel(cl2, ids[0])  # the 200-step one: long; its rerun is shown by the others
    for j in ids[1:]:
        cl2.wait_job(j, 90)
    states = {j[:8]: R.finished.get(j) for j in ids}
    R.check("killed_jobs_finish",
            all(R.finished.get(j) == "succeeded" for j in ids[1:]) and R.finished.get(ids[0]) == "cancelled",
            f"after the restart: {states}")
    with R.lock:
        R.killed.difference_update(ids)  # finished after all: counted, not excused
    R.check("stray_file_removed", not os.path.exists(stray), "an unreferenced result file at restart")
    uploads = files_under(os.path.join(data_dir, "uploads"))
    R.check("no_orphaned_uploads", not uploads,
            f"{len(before)} files before the kill, {len(uploads)} uploads left once every job finished")
    live, la = health_ok(cl2, srv2)
    R.check("live_after_restart", live, repr(la))
    return srv2


# ---- main ---------------------------------------------------------------------------------------

def on_term(*_):
    raise KeyboardInterrupt()


def missing(what):
    msg = f"hostile_server: {what} is missing"
    if IN_CI:
        print(msg + " (CI=true: a failure)", file=sys.stderr)
        sys.exit(1)
    print(msg + "; skipped", file=sys.stderr)
    sys.exit(SKIP)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--foley", required=True)
    ap.add_argument("--work-dir", required=True, help="cache (model, bundle) and run directories")
    ap.add_argument("--source-dir", default=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    ap.add_argument("--python", default="/usr/bin/python3", help="python with torch for make_tiny_models.py")
    ap.add_argument("--only", default="", help="comma-separated case names")
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    ap.add_argument("--budget", type=float, default=270, help="seconds before the whole run is aborted")
    args = ap.parse_args()
    args.foley = os.path.abspath(args.foley)
    args.work_dir = os.path.abspath(args.work_dir)
    only = set(filter(None, args.only.split(",")))
    want = lambda c: not only or c in only

    if not os.access(args.foley, os.X_OK):
        print(f"hostile_server: {args.foley} is not an executable", file=sys.stderr)
        return 1
    if not shutil.which("ffmpeg"):
        missing("the ffmpeg CLI")
    if subprocess.run([args.python, "-c", "import torch, numpy"], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode != 0:
        missing(f"python torch ({args.python} -c 'import torch')")

    os.makedirs(args.work_dir, exist_ok=True)
    for old in os.listdir(args.work_dir):  # run directories of earlier runs
        if old.startswith("run-"):
            shutil.rmtree(os.path.join(args.work_dir, old), ignore_errors=True)
    run_dir = os.path.join(args.work_dir, "run-%d" % os.getpid())
    media_dir = os.path.join(run_dir, "media")
    data_dir = os.path.join(run_dir, "sandbox", "data")
    os.makedirs(media_dir)
    os.makedirs(data_dir)

    # The whole run is bounded: SIGALRM aborts it and the finally-block stops the server.
    def on_alarm(*_):
        raise TimeoutError(f"the run exceeded --budget {args.budget:.0f} s")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(int(args.budget))

    servers, canary = [], None
    figures = {}
    try:
        bundle = make_bundle(args)
        canary = Canary()
        clip, corpus = make_media(media_dir, canary.port)
        help_text = subprocess.run([args.foley, "serve", "--help"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT).stdout.decode("utf-8", "replace")
        have_max_streams = "--max-streams" in help_text
        extra = ["--max-clip-seconds", "1", "--queue-size", str(QUEUE_SIZE), "--threads", str(HTTP_THREADS),
                 "--max-upload-mb", str(MAX_UPLOAD_MB), "--jobs-per-device", "1",
                 "--io-timeout", str(IO_TIMEOUT), "--token", TOKEN]
        if have_max_streams:
            extra += ["--max-streams", str(MAX_STREAMS)]

        def factory(name):
            s = Server(args.foley, bundle, data_dir, run_dir, name, extra)
            servers.append(s)
            return s

        log("starting: foley serve " + " ".join(extra))
        srv = factory("serve")
        if not srv.start():
            R.check("server_ready", False, "not ready within 120 s:\n" + srv.stderr_tail())
            return finish(args, run_dir, servers, figures)
        cl = Client(srv.port)
        log(f"ready on port {srv.port}; --max-streams {'present' if have_max_streams else 'absent'}")

        # One normal job first: it warms the paths a client uses, and gives an id to poll/range.
        R.case = "baseline"
        a = cl.submit(clip, fields={"prompt": "rain", "steps": "2", "seed": "7"})
        finished_id = a.json().get("id", "") if a.status == 202 else ""
        j = cl.wait_job(finished_id, 60) if finished_id else {}
        R.check("normal_job_succeeds", j.get("state") == "succeeded", f"{a!r} then {j.get('state')}")
        t = time.monotonic()
        long_id = long_job(cl, clip)
        lj = cl.wait_job(long_id, 60) if long_id else {}
        log(f"  a 200-step job took {time.monotonic() - t:.1f} s ({lj.get('state')})")
        figures["before"] = srv.figures()
        log(f"  server before: {figures['before']}")
        openapi = cl.get("/openapi.json").body.decode("utf-8", "replace")

        steps = [
            ("corpus", lambda: case_corpus(cl, srv, corpus, canary, run_dir)),
            ("fields", lambda: case_fields(cl, srv, clip, openapi)),
            ("auth", lambda: case_auth(cl)),
            ("limits", lambda: case_limits(cl, srv)),
            ("range", lambda: case_range(cl, finished_id)),
            ("sse_cap", lambda: case_sse_cap(cl, clip, have_max_streams)),
            ("burst", lambda: case_burst(cl, clip)),
            ("vanish", lambda: case_vanish(cl, srv, clip)),
            ("halfsent", lambda: case_halfsent(cl, srv, finished_id)),
            ("slowloris", lambda: case_slowloris(cl, srv)),
        ]
        for name, fn in steps:
            if not want(name):
                continue
            R.case = name
            log(f"== {name}")
            try:
                fn()
            except (TimeoutError, KeyboardInterrupt):
                raise
            except Exception as e:  # a harness error fails the case, the run goes on
                R.check("harness", False, f"{type(e).__name__}: {e}")
            if not srv.alive():
                R.check("server_alive", False, f"the server died (exit {srv.proc.returncode}):\n" + srv.stderr_tail())
                break

        R.case = "figures"
        if srv.alive():
            figures["after"] = settle(srv, figures["before"])
            log(f"  server after:  {figures['after']}")
            b, af = figures["before"], figures["after"]
            R.check("rss_growth", af["rss_mb"] - b["rss_mb"] < RSS_GROWTH_LIMIT_MB,
                    f"RSS {b['rss_mb']} -> {af['rss_mb']} MB (limit +{RSS_GROWTH_LIMIT_MB}), peak {af['hwm_mb']} MB")
            R.check("thread_growth", af["threads"] <= b["threads"] + THREAD_SLACK,
                    f"threads {b['threads']} -> {af['threads']}")
            R.check("fd_growth", af["fds"] <= b["fds"] + FD_SLACK, f"fds {b['fds']} -> {af['fds']}")
            # Everything accepted so far must have finished.
            end = time.monotonic() + 20
            for jid in sorted(R.accepted - set(R.finished)):
                cl.wait_job(jid, max(0.1, end - time.monotonic()))

        if want("restart") and srv.alive():
            R.case = "restart"
            log("== restart")
            srv2 = case_restart(args, factory, srv, cl, clip, data_dir, finished_id)
            R.case = "shutdown"
            if srv2.alive():
                code = srv2.stop()
                R.check("sigterm_exit_0", code == 0, f"exit {code}")
            # What may stay: the journal, and the results of jobs it still serves (until their TTL).
            def belongs(p):
                rel = os.path.relpath(p, data_dir)
                if rel.startswith("jobs.sqlite3"):
                    return True
                base = os.path.basename(p).split(".")[0]
                return rel.startswith("results" + os.sep) and base in R.accepted
            left = [p for p in files_under(data_dir) if not belongs(p)]
            figures["leftover_files"] = len(left)
            R.check("no_leftover_files", not left, f"{len(left)} file(s) in the data dir after a clean stop that no job owns"
                    + (": " + ", ".join(os.path.relpath(p, data_dir) for p in left[:6]) if left else ""))
    except TimeoutError as e:
        R.check("budget", False, str(e))
    except KeyboardInterrupt:
        R.check("interrupted", False, "SIGTERM/SIGINT")
    except RuntimeError as e:
        R.check("setup", False, str(e))
    finally:
        signal.alarm(0)
        for s in servers:
            if s.alive():
                s.stop(timeout=10)
        if canary:
            canary.close()
    return finish(args, run_dir, servers, figures)


def finish(args, run_dir, servers, figures):
    finished = collections.Counter(R.finished.values())
    lost = sorted(R.accepted - set(R.finished) - R.killed)
    fivexx = sum(n for st, n in R.by_status.items() if st >= 500 and st != 503)
    rejected = {st: n for st, n in sorted(R.by_status.items()) if 400 <= st < 500}
    print("\n==== figures ====")
    print(f"requests tried:     {R.tried}")
    print(f"accepted (202):     {R.by_status.get(202, 0)}")
    print(f"rejected (4xx):     {rejected}")
    print(f"5xx (except 503):   {fivexx}   503: {R.by_status.get(503, 0)}")
    print(f"no answer:          {dict(R.no_answer)}")
    print(f"finished by state:  {dict(finished)}")
    print(f"lost (202, never finished): {len(lost)}" + (f" {lost[:5]}" if lost else ""))
    print(f"killed on purpose (kill -9 case): {len(R.killed)}")
    for k in ("before", "after"):
        if k in figures:
            print(f"server {k:6s}: {figures[k]}")
    if "leftover_files" in figures:
        print(f"leftover files in the data dir: {figures['leftover_files']}")
    R.case = "totals"
    R.check("no_5xx", fivexx == 0, f"{fivexx} responses 500-502/504+")
    R.check("none_lost", not lost, f"{len(lost)} accepted jobs never finished")
    fails = R.failed()
    pend = [c for c in R.checks if c[1] == "PENDING"]
    print(f"\n==== {len(R.checks) - len(fails) - len(pend)} passed, {len(fails)} failed, {len(pend)} pending ====")
    for case, _, name, detail in fails:
        print(f"FAIL {case}/{name}: {detail[:300]}")
    for case, _, name, detail in pend:
        print(f"PENDING {case}/{name}: {detail[:200]}")
    if not fails and not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        print(f"run directory (logs, media, data dir) kept: {run_dir}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
