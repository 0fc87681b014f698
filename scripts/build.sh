#!/usr/bin/env bash
# Configure (once) and build into build/ with Ninja; ccache when present.
# Extra arguments go to the CMake configure step.
set -euo pipefail
cd "$(dirname "$0")/.."

# Paths relative to the clone in ccache's keys: a fresh clone in another
# folder reuses what this machine compiled before.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
build_dir=${BUILD_DIR:-build}
if [[ ! -f "$build_dir/build.ninja" || $# -gt 0 ]]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTASKEXEC_WERROR=ON "$@" >/dev/null
fi
# BUILD_TARGET=name builds just that target (and what it needs).
cmake --build "$build_dir" ${BUILD_TARGET:+--target "$BUILD_TARGET"}
