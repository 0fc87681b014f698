#!/usr/bin/env bash
# Run ctest (arguments as ctest's) and, when it fails, end with a digest of
# the failing checks: every Boost.Test "error"/"fatal error" line and every
# sanitizer or timeout headline from the run's log. A CI log shows only the
# head and the tail of a long output; the digest puts the failing test
# cases' names in the tail.
#   scripts/ctest-digest.sh --test-dir build [ctest args]
set -uo pipefail
dir=build
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --test-dir) dir=${args[i + 1]:-build} ;;
    --test-dir=*) dir=${args[i]#--test-dir=} ;;
  esac
done
ctest "$@"
rc=$?
if ((rc != 0)); then
  log=$dir/Testing/Temporary/LastTest.log
  echo "=== failing checks (from $log)"
  if [[ -f $log ]]; then
    sed -e 's/\x1b\[[0-9;]*m//g' "$log" |
      grep -E 'error: in "|fatal error: in "|Test case .* (did not|has failed)|ERROR: (Address|Thread|Leak)Sanitizer|WARNING: ThreadSanitizer|runtime error:|Test timeout|\*\*\*Timeout|\*\*\*Failed|Exception|Failed$' |
      awk '!seen[$0]++' | head -n 60 | cut -c1-400
  fi
  echo "=== end of failing checks"
fi
exit "$rc"
