#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: install, build, and supervise
# a demo task end to end (launch, output, wait, exit state, cleanup). Any
# arguments are passed to the example, e.g. scripts/run.sh -- /bin/echo hi
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD_TARGET=taskexec-embed-example scripts/build.sh
echo "== taskexec-embed-example $*"
set +e
build/bin/taskexec-embed-example "$@"
code=$?
set -e
echo "== task exit code: $code"
# The demo task exits 3 on purpose; anything else from the default run is a failure.
if [[ $# -eq 0 && $code -ne 3 ]]; then exit 1; fi
exit 0
