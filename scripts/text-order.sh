#!/usr/bin/env bash
# Regenerate apps/taskexecd/text-order.txt: the functions of taskexecd that
# a daemon runs for a task's whole life (start, Launch with and without a
# cgroup, Version, Stats, Signal, Events, Shutdown, Wait, Destroy), one
# mangled name per line, grouped by the step that first ran them (within a
# step, in callgrind's order). The daemon is linked with them first, in
# that order (lld's --symbol-ordering-file, apps/taskexecd/CMakeLists.txt),
# so that the text
# a daemon touches is a few hundred contiguous pages instead of pages spread
# over all of it: the kernel maps a file's pages 64 KiB at a time around
# each fault, so scattered hot code keeps most of the binary resident.
#
# The list goes stale as the code changes; a name it lacks is only placed
# in the binary's default order (the link does not fail): run this again
# when the benchmark's PSS figure moves (scripts/bench.sh). Needs valgrind
# and root (the cgroup round); takes about a minute.
#   scripts/text-order.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "text-order: needs valgrind" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "text-order: needs root (a task in a cgroup)" >&2; exit 2; }
command -v callgrind_control >/dev/null || { echo "text-order: needs callgrind_control (valgrind)" >&2; exit 2; }
BUILD_TARGET=taskexecd scripts/build.sh
BUILD_TARGET=taskexec-cli scripts/build.sh
bin=$PWD/${BUILD_DIR:-build}/bin
work=$(mktemp -d /tmp/taskexec-text-order.XXXXXX)
daemon=
# On the way out, also on a failed step: the daemon under valgrind (it
# takes its task and the task's cgroup with it) and the scratch directory.
cleanup() {
  if [[ -n $daemon ]] && kill -0 "$daemon" 2>/dev/null; then
    kill -TERM "$daemon" 2>/dev/null || true
    wait "$daemon" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# One daemon's life under callgrind, in steps; $1 names the round, $2 says
# how the daemon starts (start: as an agent starts it, through `taskexec
# start`, create_executor's options and handshake; direct: by hand or a
# unit, logging at info), the rest are Launch's options. After each step
# the profile is dumped (callgrind_control) and what the step ran moves to
# $work/step.N, so the list is grouped by the step that first ran each
# function: a daemon that only starts and launches touches the front of it
# alone.
round() {
  local name=$1 how=$2 sock=$work/$1.sock
  shift 2
  mkdir -p "$work/dumps"
  # A launch's child runs the daemon's text too, in the daemon's memory
  # (CLONE_VM), until its exec: valgrind makes it a process of its own,
  # dumped as it execs (execve; execveat through syscall()). valgrind runs
  # the daemon in its own process: the pid the handshake names.
  local grind=(valgrind --tool=callgrind --demangle=no
               "--callgrind-out-file=$work/dumps/%p.out" --dump-before=execve
               --dump-before=syscall)
  local t=("$bin/taskexec" --socket "$sock")
  if [[ $how == start ]]; then
    printf '#!/bin/sh\nexec %s "%s" "$@"\n' "${grind[*]}" "$bin/taskexecd" >"$work/taskexecd"
    chmod +x "$work/taskexecd"
    "${t[@]}" --daemon "$work/taskexecd" start >"$work/$name.config" 2>"$work/$name.log" ||
      { echo "text-order: taskexec start failed" >&2; cat "$work/$name.log" >&2; exit 1; }
    daemon=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$work/$name.config")
  else
    "${grind[@]}" "$bin/taskexecd" --socket "$sock" --log-level info >"$work/$name.log" 2>&1 &
    daemon=$!
    for _ in $(seq 300); do
      [[ -S $sock ]] && break
      sleep 0.1  # valgrind's start; not a measurement
    done
    [[ -S $sock ]] || { echo "text-order: the daemon did not start" >&2; cat "$work/$name.log" >&2; exit 1; }
  fi
  local n=0
  collect() {  # $1: the step's number
    mkdir -p "$work/step.$1"
    local f
    # What the step's processes dumped (the daemon's, a launch's child's);
    # among them their order does not matter.
    for f in "$work"/dumps/*; do
      [[ -e $f ]] || continue
      n=$((n + 1))
      mv "$f" "$(printf '%s/step.%s/%s.%04d' "$work" "$1" "$name" "$n")"
    done
  }
  step() {  # $1: the step's number; the rest, the command
    local k=$1
    shift
    "$@" >/dev/null
    if ! callgrind_control -d "$daemon" >"$work/control.log" 2>&1; then
      echo "text-order: callgrind_control could not dump the daemon's profile:" >&2
      cat "$work/control.log" "$work/$name.log" >&2
      exit 1
    fi
    collect "$k"
  }
  step 1 true
  step 2 "${t[@]}" launch --stdout "$work/$name.stdout" "$@" -- /bin/sh -c 'echo up; exec sleep 1000'
  step 3 "${t[@]}" version
  step 4 "${t[@]}" stats --no-stream
  step 5 "${t[@]}" stats --count 2 --interval-ms 200
  step 6 "${t[@]}" signal SIGCONT
  step 7 "${t[@]}" events
  step 8 "${t[@]}" shutdown
  step 9 "${t[@]}" wait
  "${t[@]}" destroy >/dev/null
  # Gone, and its last profile written (not always our child: `start`'s
  # daemon is not).
  for _ in $(seq 300); do
    kill -0 "$daemon" 2>/dev/null || break
    sleep 0.1  # valgrind writing its profile; not a measurement
  done
  wait "$daemon" 2>/dev/null || true
  daemon=
  collect 10
}
round host start
round cgroup start --limits --memory-max-mb 64 --pids-max 64
round direct direct

# The functions whose object is taskexecd, each once, where a step first
# ran it: callgrind names each object (ob=) and function (fn=) once with an
# id, then by the id alone (ids are per file).
files=()
for k in $(seq 10); do
  for f in "$work/step.$k"/host.* "$work/step.$k"/cgroup.* "$work/step.$k"/direct.*; do
    if [[ -s $f ]]; then files+=("$f"); fi
  done
done
((${#files[@]} > 0)) || { echo "text-order: callgrind wrote no profile" >&2; exit 1; }
awk '
  FNR == 1 { delete ob; delete fn; cur = "" }
  match($0, /^c?ob=\([0-9]+\)/) {
    id = substr($0, 1, RLENGTH); sub(/^c?ob=/, "", id)
    if (length($0) > RLENGTH) ob[id] = substr($0, RLENGTH + 2)
    if ($0 ~ /^ob=/) cur = ob[id]
    next
  }
  match($0, /^c?fn=\([0-9]+\)/) {
    id = substr($0, 1, RLENGTH); sub(/^c?fn=/, "", id)
    if (length($0) > RLENGTH) fn[id] = substr($0, RLENGTH + 2)
    name = fn[id]
    sub(/\047[0-9]+$/, "", name)  # a recursion level: callgrind adds a quote and the depth
    if ($0 ~ /^fn=/ && cur ~ /\/taskexecd$/ && name !~ /^0x/ && name != "(below main)" && !(name in seen)) {
      seen[name] = 1
      print name
    }
  }
' "${files[@]}" >"$work/list"
# A daemon's start alone runs several hundred of its functions.
if (($(wc -l <"$work/list") < 200)); then
  echo "text-order: only $(wc -l <"$work/list") functions found; the list is left as it was" >&2
  exit 1
fi
mv "$work/list" apps/taskexecd/text-order.txt
echo "text-order: $(wc -l <apps/taskexecd/text-order.txt) functions in apps/taskexecd/text-order.txt"
