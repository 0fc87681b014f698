#!/usr/bin/env bash
# Install, build, and run the whole test suite: the tiers (unit, integration,
# privileged), the docs and install checks and the benchmark smokes through
# ctest; then the hardening stages (scripts/hardening.sh: the tiers again
# under ASan+UBSan and under TSan, the fuzz targets, the static checks). As
# root every tier runs; without root the privileged tier is skipped with its
# reason, unless CI=true, where a skip is a failure.
# TASKEXEC_HARDENING=0 stops after the first ctest run; extra arguments go
# to that ctest run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
scripts/ctest-digest.sh --test-dir "${BUILD_DIR:-build}" --output-on-failure "$@"
if [[ ${TASKEXEC_HARDENING:-1} != 0 ]]; then
  scripts/hardening.sh
fi
