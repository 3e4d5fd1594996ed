#!/bin/sh
# `foley generate` end to end on the complete tiny model: a single clip (WAV + muxed MP4 checked
# with ffprobe when the ffmpeg CLI is there, Y4M input otherwise), a JSONL batch with bad lines
# (nonzero exit, the good outputs written, nothing for the bad ones), a CSV batch, bad flags
# (exit 2), batch outputs confined to --output-dir, the list again with --max-batch 3 (batched:
# the same audio within 1e-5), --sample-format s16 read by Python's wave, and
# text-only audio (--seconds, and a batch line with seconds).
# Usage: generate_cli.sh FOLEY PYTHON SOURCE_DIR WORK_DIR. Exit 77 = skipped (a missing tool; in
# CI, CI=true, that is a failure instead: tests/cmake/skip_missing.sh).
set -eu
FOLEY=$1 PY=$2 SRC=$3 WORK=$4
. "$SRC/tests/cmake/skip_missing.sh"
. "$SRC/tests/cmake/tiny_model.sh"
tiny_work "$PY" "$WORK"
fail() { echo "FAIL: $*"; exit 1; }

# The tiny model depends only on its generator scripts: cached in /tmp under their hash.
tiny=$(tiny_model_dir "$PY" "$SRC")
"$FOLEY" convert --model-dir "$tiny" --dtype f32 -o tiny.safetensors >/dev/null

# MP4 in and out needs FFmpeg in foley and the ffmpeg CLI here; otherwise a Y4M clip and WAV.
# A foley built without FFmpeg is a build choice; a missing ffmpeg CLI beside one built with it is
# a missing tool (a failure in CI).
have_ffmpeg=0
if ! "$FOLEY" generate --model none --video none --format mp4 2>&1 | grep -q "needs FFmpeg"; then
  if command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null; then
    have_ffmpeg=1
  elif [ "${CI:-}" = true ]; then
    skip_missing "foley has FFmpeg but the ffmpeg/ffprobe CLI is not installed"
  fi
fi
echo "FFmpeg paths: $have_ffmpeg"
if [ $have_ffmpeg = 1 ]; then
  ffmpeg -nostdin -y -v error -f lavfi -i testsrc2=size=96x64:rate=25:duration=2 \
    -f lavfi -i sine=frequency=440:duration=2 -c:v libx264 -pix_fmt yuv420p -c:a aac \
    -shortest clip.mp4
  clip=clip.mp4
else
  tiny_y4m "$PY" clip.y4m 2
  clip=clip.y4m
fi

# ---- one clip --------------------------------------------------------------------------------
"$FOLEY" generate --model tiny.safetensors --video $clip --prompt "a ticking clock" --steps 2 \
  --seed 1 -o out/one --verbose 2>err.txt || { cat err.txt; fail "generate exited $?"; }
grep -q "timings: decode" err.txt || fail "no stage timings with --verbose"
grep -q "noise" err.txt || fail "no note that the tiny model's output is noise"
[ -s out/one.wav ] || fail "no out/one.wav"
if [ $have_ffmpeg = 1 ]; then
  "$FOLEY" generate --model tiny.safetensors --video $clip --steps 1 --format flac -o out/probe
  [ -s out/one.mp4 ] || fail "no out/one.mp4"
  streams=$(ffprobe -v error -show_entries stream=codec_type -of csv=p=0 out/one.mp4 | sort | tr '\n' ' ')
  [ "$streams" = "audio video " ] || fail "out/one.mp4 streams: $streams"
  [ -s out/probe.flac ] || fail "no out/probe.flac"
  [ -e out/probe.wav ] && fail "--format flac also wrote a WAV"
  echo "checked: out/one.mp4 has $streams"
fi

# ---- text-only: --seconds without a video writes audio only ----------------------------------
"$FOLEY" generate --model tiny.safetensors --seconds 2 --prompt "rain" --steps 1 -o out/text \
  2>err.txt || { cat err.txt; fail "--seconds exited $?"; }
[ -s out/text.wav ] || fail "no out/text.wav"
ls out/text.mp4 >/dev/null 2>&1 && fail "text-only generation wrote an MP4"
"$PY" - <<'PY' || fail "out/text.wav is not 2 s of 48 kHz float (T25 = 50, Ta = 100: 96000 samples)"
import struct
d = open("out/text.wav", "rb").read()
i = d.index(b"data")
assert struct.unpack("<I", d[i + 4:i + 8])[0] == 96000 * 4
PY
set +e
"$FOLEY" generate --model tiny.safetensors --seconds 2 --video $clip -o out/both 2>err.txt
rc=$?
set -e
[ $rc = 2 ] && grep -q -- "--seconds" err.txt ||
  { cat err.txt; fail "--seconds with --video: exit $rc"; }
set +e
"$FOLEY" generate --model tiny.safetensors --prompt "rain" -o out/neither 2>err.txt
rc=$?
set -e
[ $rc = 2 ] && grep -q -- "--seconds" err.txt ||
  { cat err.txt; fail "neither --video nor --seconds: exit $rc"; }
ls out/both* out/neither* >/dev/null 2>&1 && fail "output written for bad flags"

# ---- bad flags: exit 2, nothing written ------------------------------------------------------
set +e
"$FOLEY" generate --model tiny.safetensors --video $clip --steps 0 -o out/bad 2>err.txt
rc=$?
set -e
[ $rc = 2 ] || fail "--steps 0 exited $rc"
grep -q steps err.txt || fail "the error does not name steps"
ls out/bad* >/dev/null 2>&1 && fail "output written for bad flags"

# ---- JSONL batch with one bad line -----------------------------------------------------------
cat > list.jsonl <<JSON
{"video": "$clip", "prompt": "rain", "steps": 2, "output": "first"}
{"video": "missing.mp4", "prompt": "nothing", "steps": 2, "output": "second"}
{"video": "$clip", "prompt": "wind", "steps": 2, "seed": 5, "guidance": 1, "output": "third", "format": "x"}
{"video": "$clip", "prompt": "wind", "steps": 2, "seed": 5, "guidance": 1, "output": "fourth"}
{"video": "$clip", "prompt": "escape", "steps": 2, "output": "../escaped"}
{"video": "$clip", "prompt": "escape", "steps": 2, "output": "$WORK/absolute"}
{"video": "$clip", "prompt": "escape", "steps": 2, "output": "sub/../../escaped2"}
{"seconds": 1, "prompt": "rain", "steps": 1, "output": "text_only"}
JSON
set +e
"$FOLEY" generate --model tiny.safetensors --batch list.jsonl --output-dir batch --format wav 2>err.txt
rc=$?
set -e
[ $rc = 2 ] || { cat err.txt; fail "batch with bad lines exited $rc"; }
[ -s batch/first.wav ] && [ -s batch/fourth.wav ] && [ -s batch/text_only.wav ] ||
  fail "good batch outputs missing"
ls batch/second* batch/third* >/dev/null 2>&1 && fail "outputs written for bad lines"
grep -q "list.jsonl:2" err.txt && grep -q "list.jsonl:3" err.txt || { cat err.txt; fail "bad lines not reported"; }
# Outputs are confined to --output-dir: "..", absolute paths and climbing out are refused.
for n in 5 6 7; do
  grep -q "list.jsonl:$n: skipped: output .*inside --output-dir" err.txt || { cat err.txt; fail "line $n (outside --output-dir) not refused"; }
done
ls escaped* absolute* >/dev/null 2>&1 && fail "a batch line wrote outside --output-dir"
grep -q "5 entries failed or skipped" err.txt || { cat err.txt; fail "failure count"; }

# ---- the same list with --max-batch 3: same exit, same files, the same audio within 1e-5 ------
set +e
"$FOLEY" generate --model tiny.safetensors --batch list.jsonl --output-dir batch3 --format wav \
  --max-batch 3 >out3.txt 2>err3.txt
rc=$?
set -e
[ $rc = 2 ] || { cat err3.txt; fail "--max-batch 3 exited $rc"; }
grep -q "5 entries failed or skipped" err3.txt || { cat err3.txt; fail "--max-batch 3 failure count"; }
grep -q "first.wav .*denoised in a batch of 2" out3.txt || { cat out3.txt; fail "first and fourth not batched"; }
"$PY" - <<'PY' || fail "--max-batch 3 audio differs from the entries run alone"
import array
def samples(path):
    b = open(path, "rb").read()
    at = b.index(b"data") + 8
    a = array.array("f")
    a.frombytes(b[at:at + (len(b) - at) // 4 * 4])
    return a
for name in ("first", "fourth", "text_only"):
    x, y = samples("batch/%s.wav" % name), samples("batch3/%s.wav" % name)
    assert len(x) == len(y) > 0, name
    worst = max(abs(p - q) for p, q in zip(x, y))
    assert worst <= 1e-5, (name, worst)
PY

# ---- 16-bit PCM WAV (--sample-format s16) that Python's wave module reads --------------------
"$FOLEY" generate --model tiny.safetensors --video $clip --steps 1 --format wav \
  --sample-format s16 -o out/s16 2>err.txt || { cat err.txt; fail "--sample-format s16 exited $?"; }
"$PY" - <<'PY' || fail "out/s16.wav is not 16-bit PCM readable by Python's wave"
import wave
w = wave.open("out/s16.wav")
assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 48000), w.getparams()
assert w.getnframes() > 0
PY
if grep -q "clipped" err.txt; then grep -q "warning: [0-9]* of [0-9]* samples clipped" err.txt || fail "clip warning"; fi

# ---- CSV batch ---------------------------------------------------------------------------------
printf 'video,prompt,steps,output\n%s,"footsteps, on gravel",2,csv_out\n' $clip > list.csv
"$FOLEY" generate --model tiny.safetensors --batch list.csv --output-dir batch --format wav
[ -s batch/csv_out.wav ] || fail "CSV batch output missing"
echo OK
