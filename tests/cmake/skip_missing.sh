# Sourced by the shell-driven ctest entries: the shell side of FOLEY_SKIP_MISSING (test_util.h).
# `skip_missing WHY` exits 77 (ctest's SKIP_RETURN_CODE: skipped) on a developer's machine and 1
# (a failure) in CI (CI=true), where a missing tool or data set is a broken install step.
skip_missing() {
  if [ "${CI:-}" = true ]; then
    echo "missing in CI (CI=true): $1" >&2
    exit 1
  fi
  echo "SKIPPED: $1"
  exit 77
}
