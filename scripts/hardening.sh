#!/usr/bin/env bash
# The hardening stages of the test suite (docs/security.md), each in its own
# build directory: ASan + UBSan and TSan builds running the test tiers, the
# fuzz targets for a short fixed time, and the static checks.
#   scripts/hardening.sh [STAGE...]   # asan tsan fuzz static
# The default is what passes today: fuzz, static, and ASan+UBSan over the
# unit and integration tiers. Not yet in it (issue 8 stays open): ASan over
# the privileged tier (a heap-use-after-free in exec into a running
# container, tests/privileged/container_test.cpp), and TSan (the reaper's
# signalfd children are not reaped under TSan's signal handling).
# FUZZ_SECONDS (default 30) is each fuzz target's time.
set -euo pipefail
cd "$(dirname "$0")/.."
stages=("$@")
((${#stages[@]})) || stages=(fuzz static asan-unit-integration)
for stage in "${stages[@]}"; do
  start=$SECONDS
  echo "=== hardening: $stage"
  case $stage in
    asan) scripts/sanitize.sh address ;;
    asan-unit-integration) SANITIZE_LABELS='unit|integration' scripts/sanitize.sh address ;;
    tsan) scripts/sanitize.sh thread ;;
    fuzz) scripts/fuzz.sh "${FUZZ_SECONDS:-30}" ;;
    static) scripts/static.sh ;;
    *) echo "hardening: unknown stage \"$stage\" (asan, tsan, fuzz or static)" >&2; exit 2 ;;
  esac
  echo "=== hardening: $stage passed in $((SECONDS - start)) s"
done
