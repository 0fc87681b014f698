#!/usr/bin/env bash
# Run every benchmark and the load generator's scenarios, then print one
# table: each figure beside its baseline measured in the same run, the ratio,
# and the target.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The peers and jq, for the comparison only (the build and the tests never
# need them): runc (bench_container, conmon), conmon, s6, supervisor.
if [[ $(id -u) -eq 0 ]]; then
  missing=()
  for p in runc conmon s6 supervisor jq; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    # supervisor's package would start a machine-wide supervisord: forbid
    # service starts while installing (as Debian's container images do).
    policy=/usr/sbin/policy-rc.d
    added_policy=""
    if [[ ! -e $policy ]]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added_policy=1
      trap 'rm -f "$policy"' EXIT  # also when the install fails
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [[ -n $added_policy ]]; then
      rm -f "$policy"
      trap - EXIT
    fi
  fi
fi
scripts/build.sh
# A program just linked is dirty in the page cache until it is written
# back, and a process mapping it counts those pages as its Private_Dirty
# (2168 KiB for an idle daemon relinked a moment before, against 260 once
# written): the memory figures below are taken with the binaries on disk.
sync

work=$(mktemp -d /tmp/taskexec-bench-table-XXXXXX)
trap 'rm -rf "$work"' EXIT
export TASKEXEC_BENCH_TABLE=$work/table.tsv
: >"$TASKEXEC_BENCH_TABLE"
for b in launch rpc stats exec_stream container peers; do
  echo "== bench_$b"
  build/bin/bench_$b | tee "$work/$b.out"
done
conmon_pss=$(awk '/^conmon PSS:/ {print $3}' "$work/peers.out")

# The load generator: each scenario at its full size, its figures into the table.
stress=(build/bin/taskexec-stress)
runs=("churn" "churn --embedded" "fleet${conmon_pss:+ --peer-pss-kib $conmon_pss}" "rpc-flood"
  "reaper-storm" "reaper-storm --embedded" "output-flood" "output-flood --fifo" "faults")
status=0
for r in "${runs[@]}"; do
  name=${r// /_}
  # shellcheck disable=SC2086 # $r is the scenario and its options, split on purpose
  "${stress[@]}" $r --json "$work/$name.json" || status=1
  if command -v jq >/dev/null && [[ -s $work/$name.json ]]; then
    jq -r --arg run "$r" '.scenarios[] | .comparisons[] |
        ["stress " + $run + ": " + .figure, (.value | tostring), .unit, (.baseline // ""),
         ((.baseline_value // 0) | tostring), (.target // "")] | @tsv' \
      "$work/$name.json" >>"$TASKEXEC_BENCH_TABLE"
  fi
done

echo
echo "== every figure beside its baseline, measured in this run"
awk -F'\t' '
  { fig[NR] = $1; val[NR] = $2; unit[NR] = $3; base[NR] = $4; bval[NR] = $5; tgt[NR] = $6
    if (length($1) > w) w = length($1); if (length($4) > bw) bw = length($4) }
  END {
    fmt = "%-" w "s  %12s %-13s  %-" bw "s  %12s  %8s  %s\n"
    printf fmt, "figure", "value", "unit", "baseline", "baseline", "ratio", "target"
    for (i = 1; i <= NR; i++) {
      ratio = (base[i] != "" && bval[i] != 0) ? sprintf("%.2fx", val[i] / bval[i]) : ""
      printf fmt, fig[i], sprintf("%.4g", val[i]), unit[i], base[i], base[i] == "" ? "" : sprintf("%.4g", bval[i]), ratio, tgt[i]
    }
  }' "$TASKEXEC_BENCH_TABLE"
exit $status
