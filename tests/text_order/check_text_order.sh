#!/usr/bin/env bash
# Fails when apps/taskexecd/text-order.txt has gone stale: fewer than
# MIN_PERCENT of its functions are still functions of the daemon built
# (code changed since scripts/text-order.sh made the list). A stale list
# does not break the daemon; it only lets its text spread out again (the
# PSS figure of scripts/bench.sh grows back), which nothing else would say.
# Fails too when the daemon needs libm.so (apps/taskexecd/CMakeLists.txt
# takes its three functions from libm.a), which nothing else would say
# either.
#   check_text_order.sh NM TASKEXECD ORDER_FILE [MIN_PERCENT]
set -euo pipefail
nm=$1 daemon=$2 order=$3 min=${4:-90}
if readelf -d "$daemon" | grep -q 'NEEDED.*\[libm\.so'; then
  echo "check_text_order: $daemon needs libm.so again (readelf -d)" >&2
  exit 1
fi
total=$(grep -c . "$order" || true)
(( total > 0 )) || { echo "check_text_order: $order is empty" >&2; exit 1; }
found=$(LC_ALL=C comm -12 <(LC_ALL=C sort -u "$order") \
  <("$nm" --defined-only "$daemon" | awk 'NF == 3 && $2 ~ /^[tTwW]$/ {print $3}' | LC_ALL=C sort -u) |
  wc -l)
percent=$((found * 100 / total))
echo "check_text_order: $found of the $total functions of $order are in $daemon ($percent%)"
if ((percent < min)); then
  echo "check_text_order: under $min%: the list is stale; run scripts/text-order.sh and commit it" >&2
  exit 1
fi
