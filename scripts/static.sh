#!/usr/bin/env bash
# Static checks: clang-tidy (checks in .clang-tidy) and cppcheck over the
# library and the programs (libexec/, apps/), from build/'s
# compile_commands.json. Any finding fails. Tests are not checked.
#   scripts/static.sh [tidy|cppcheck]   # default: both
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
scripts/setup.sh hardening
build=${BUILD_DIR:-build}
[[ -f $build/compile_commands.json ]] || scripts/build.sh
mapfile -t sources < <(git ls-files 'libexec/src/*.cpp' 'libexec/src/**/*.cpp' 'apps/*.cpp' 'apps/**/*.cpp' | sort -u)
jobs=$(nproc)
status=0

if [[ $what == all || $what == cppcheck ]]; then
  echo "static: cppcheck on ${#sources[@]} files"
  # Our own headers are checked as they are included; Boost's are not read
  # (system headers), so cppcheck sees only our code.
  if ! cppcheck --quiet --error-exitcode=1 --inline-suppr -j "$jobs" \
      --enable=warning,performance,portability --std=c++20 --language=c++ \
      --suppressions-list=.cppcheck-suppressions \
      -I libexec/include -D__linux__ -D__x86_64__ -DBOOST_PROCESS_USE_STD_FS "${sources[@]}"; then
    echo "static: cppcheck found the above" >&2
    status=1
  fi
fi

if [[ $what == all || $what == tidy ]]; then
  echo "static: clang-tidy on ${#sources[@]} files, $jobs at a time"
  out=$(mktemp)
  each=$(mktemp -d)
  trap 'rm -rf "$out" "$each"' EXIT
  # GCC-only flags in the compile commands are dropped for clang. Each file's
  # report goes to a file of its own: reports of parallel runs written to one
  # file interleave mid-line, and a diagnostic split that way went uncounted.
  printf '%s\n' "${sources[@]}" |
    EACH=$each BUILD=$build xargs -P "$jobs" -n 1 sh -c \
      'clang-tidy-14 -p "$BUILD" --quiet --extra-arg=-Wno-unknown-warning-option \
         --extra-arg=-Wno-unused-command-line-argument "$1" \
         >"$EACH/$(printf %s "$1" | tr / _).txt" 2>/dev/null || true' sh
  cat "$each"/*.txt >"$out"
  diag='^[^ :]+:[0-9]+:[0-9]+: (warning|error):'
  # Reports located inside Boost are the analyzer not seeing Boost's own
  # invariants (coroutine frames, type-erased executors; .clang-tidy says
  # more); anything located elsewhere is a finding.
  frames='^/usr/include/boost/'
  ignored=$(grep -E "$diag" "$out" | grep -cE "$frames" || true)
  if grep -E "$diag" "$out" | grep -vqE "$frames"; then
    grep -E -A3 "$diag" "$out" | grep -vE "$frames" >&2 || true
    echo "static: clang-tidy found $(grep -E "$diag" "$out" | grep -vcE "$frames") diagnostics (above)" >&2
    status=1
  else
    echo "static: clang-tidy clean ($ignored analyzer reports located inside Boost ignored)"
  fi
fi
exit $status
