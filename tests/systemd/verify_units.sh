#!/bin/bash
# The systemd units as configured for the build tree (ExecStart naming
# build/bin/taskexecd): `systemd-analyze verify` must accept them without a
# word (it exits 0 on keys it ignores, so any output fails the test), and
# they must say what docs/operations.md says they do. verify reads unit
# files: it needs no systemd running as PID 1. ctest: systemd_units.
set -u
dir=$1
fail() { echo "systemd_units: $*" >&2; exit 1; }
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found: skipped"; exit 77; }
service=$dir/taskexecd@.service
socket=$dir/taskexecd@.socket
[[ -f $service && -f $socket ]] || fail "units not configured in $dir"
out=$(cd "$dir" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify ./taskexecd@.service ./taskexecd@.socket 2>&1)
rc=$?
[[ $rc -eq 0 && -z $out ]] || fail "systemd-analyze verify (rc=$rc): $out"
for line in 'Type=notify' 'Delegate=yes' 'KillMode=mixed' 'Requires=taskexecd@%i.socket'; do
  grep -qxF "$line" "$service" || fail "taskexecd@.service lacks $line"
done
grep -qE '^ExecStart=/.*/taskexecd --task-id %i --cgroup-parent self \\$' "$service" ||
  fail "taskexecd@.service: ExecStart is not taskexecd --task-id %i --cgroup-parent self ..."
grep -qF -- '--exit-dir /run/taskexec/exits' "$service" || fail "no --exit-dir in ExecStart"
for line in 'ListenStream=/run/taskexec/%i.sock' 'SocketMode=0600' 'Accept=no'; do
  grep -qxF "$line" "$socket" || fail "taskexecd@.socket lacks $line"
done
echo "systemd_units: verified"
