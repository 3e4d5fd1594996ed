# Sourced by the shell-driven ctest entries that need the complete tiny model or a small clip.
# `tiny_model_dir PY SRC` prints the folder of the tiny official-format model
# (scripts/make_tiny_models.py --seed 3), made once and cached in /tmp under the hash of its
# generator scripts. `tiny_y4m PY OUT SECONDS` writes a 96x64, 25 fps Y4M clip (needs no FFmpeg).
# `tiny_work PY WORK` checks for python3-torch (skip_missing from skip_missing.sh otherwise) and
# enters an empty WORK.
tiny_work() {
  "$1" -c 'import torch' 2>/dev/null || skip_missing "python3-torch missing ($1)"
  rm -rf "$2" && mkdir -p "$2"
  cd "$2"
}

tiny_model_dir() {
  key=$(cat "$2"/scripts/make_tiny_models.py "$2"/scripts/tiny_models/*.py | sha1sum | cut -c1-16)
  tiny=/tmp/foley-tiny-cli-$key
  if [ ! -f "$tiny/synchformer_state_dict.pth" ]; then
    tmp=$(mktemp -d /tmp/foley-tiny-XXXXXX)
    "$1" "$2/scripts/make_tiny_models.py" "$tmp" --seed 3 >/dev/null
    mv -T "$tmp" "$tiny" 2>/dev/null || rm -rf "$tmp"
  fi
  echo "$tiny"
}

tiny_y4m() {
  "$1" - "$2" "$3" <<'PY'
import sys
w, h = 96, 64
with open(sys.argv[1], "wb") as f:
    f.write(b"YUV4MPEG2 W96 H64 F25:1 Ip A1:1 C420jpeg\n")
    for i in range(int(float(sys.argv[2]) * 25)):
        f.write(b"FRAME\n" + bytes((x + 3 * i) % 256 for x in range(w * h)) + bytes([128]) * (w * h // 2))
PY
}
