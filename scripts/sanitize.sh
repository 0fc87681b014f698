#!/usr/bin/env bash
# Build with a sanitizer and run the test tiers (unit, integration,
# privileged, fuzz replay) under it, each in its own build directory:
#   scripts/sanitize.sh address   # ASan + UBSan, in build-asan/
#   scripts/sanitize.sh thread    # TSan, in build-tsan/
# Extra arguments go to ctest. A sanitizer report fails the test that
# produced it (the runtime aborts the process or exits non-zero).
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:?usage: scripts/sanitize.sh address|thread [ctest args]}
shift
case $kind in
  address) dir=${BUILD_DIR:-build-asan} ;;
  thread) dir=${BUILD_DIR:-build-tsan} ;;
  *) echo "sanitize: unknown sanitizer \"$kind\" (address or thread)" >&2; exit 2 ;;
esac
scripts/setup.sh hardening
BUILD_DIR=$dir scripts/build.sh -DTASKEXEC_SANITIZE="$kind" -DCMAKE_BUILD_TYPE=RelWithDebInfo
# Sanitizer reports go to stderr, which ctest shows for a failed test.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
# What the tests check of our behaviour, not of the build: the benchmark
# smokes (their numbers mean nothing instrumented), the format check and
# the install check run once, in the plain build.
# SANITIZE_LABELS narrows the tiers (default: all three).
scripts/ctest-digest.sh --test-dir "$dir" --output-on-failure -L "${SANITIZE_LABELS:-unit|integration|privileged}" \
  -E '^(format_check|package_consumers|docs_embedding_example)$' "$@"
