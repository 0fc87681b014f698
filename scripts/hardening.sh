#!/usr/bin/env bash
# The hardening stages of the test suite (docs/security.md), each in its own
# build directory: ASan + UBSan and TSan builds running the test tiers, the
# fuzz targets for a short fixed time, and the static checks.
#   scripts/hardening.sh [STAGE...]   # asan tsan fuzz static
# The default is every stage: asan, tsan, fuzz, static. asan-unit-integration
# (the unit and integration tiers only) is there for a quicker look.
# FUZZ_SECONDS (default 30) is each fuzz target's time.
set -euo pipefail
cd "$(dirname "$0")/.."
stages=("$@")
((${#stages[@]})) || stages=(asan tsan fuzz static)
for stage in "${stages[@]}"; do
  start=$SECONDS
  echo "=== hardening: $stage"
  case $stage in
    asan) scripts/sanitize.sh address ;;
    asan-unit-integration) SANITIZE_LABELS='unit|integration' scripts/sanitize.sh address ;;
    tsan) scripts/sanitize.sh thread ;;
    fuzz) scripts/fuzz.sh "${FUZZ_SECONDS:-30}" ;;
    static) scripts/static.sh ;;
    *) echo "hardening: unknown stage \"$stage\" (asan, asan-unit-integration, tsan, fuzz or static)" >&2; exit 2 ;;
  esac
  echo "=== hardening: $stage passed in $((SECONDS - start)) s"
done
