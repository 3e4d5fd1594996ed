#!/bin/sh
# dit_profile --synthetic small --seconds 1 --device cpu: exit 0, per-kind lines for linear and
# attention, and a positive op-time sum. Usage: dit_profile_smoke.sh DIT_PROFILE
set -u
out=$("$1" --synthetic small --seconds 1 --device cpu 2>&1)
rc=$?
echo "$out"
fail() { echo "FAIL: $*"; exit 1; }
[ "$rc" -eq 0 ] || fail "exit status $rc"
echo "$out" | grep -q '^kind .* op linear$' || fail "no linear row"
echo "$out" | grep -q '^kind .* op attention$' || fail "no attention row"
echo "$out" | grep -Eq '^op_sum_ms_per_step [0-9.]*[1-9]' || fail "op time sum is not positive"
echo "$out" | grep -q '^row 1 ' || fail "no shape-class rows"
