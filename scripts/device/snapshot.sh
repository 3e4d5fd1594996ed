#!/usr/bin/env bash
# Run HERE before a device call: writes .snap/ (ignored by git) = the committed tree (HEAD) with
# the given working-tree paths copied over it, plus ../shared/golden when --golden is given.
# Several people edit this working tree at once; the device gets the whole tree, so building
# from a snapshot keeps someone else's half-written file out of your device build.
#
#   bash scripts/device/snapshot.sh [--golden] [path...]
#   device run: carry [".snap", ".devdeps"], command "cd .snap/src && bash scripts/device/build.sh ..."
# (with --golden, the case is at .snap/shared/golden, i.e. ../shared/golden from .snap/src).
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.snap/' .git/info/exclude 2>/dev/null || echo '/.snap/' >>.git/info/exclude
rm -rf .snap
mkdir -p .snap/src
git archive HEAD | tar -x -C .snap/src
golden=0
for p in "$@"; do
  if [ "$p" = --golden ]; then golden=1; continue; fi
  mkdir -p ".snap/src/$(dirname "$p")"
  cp -a "$p" ".snap/src/$p"
done
# the device build script itself is always taken from the working tree
mkdir -p .snap/src/scripts/device && cp scripts/device/*.sh .snap/src/scripts/device/
if [ "$golden" = 1 ]; then
  mkdir -p .snap/shared && cp -a ../shared/golden .snap/shared/
fi
du -sh .snap
