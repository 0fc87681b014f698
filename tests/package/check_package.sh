#!/usr/bin/env bash
# The installed package links into other programs (ctest: package_consumers).
#   tests/package/check_package.sh BUILD_DIR WORK_DIR
# Installs BUILD_DIR into WORK_DIR/prefix, checks the exported targets carry
# nothing of this machine and nothing the consumer does not need, then builds
# and runs three consumers of tests/package/consumer.cpp, each launching
# /bin/true through a task_executor:
#   (a) CMake: Boost.Log (shared) found first, then taskexec; io.post (deprecated Asio)
#   (b) CMake: taskexec found first, then Boost; every library static but glibc
#   (c) plain g++ with pkg-config
# Consumers are built unoptimised, through ccache when present.
set -euo pipefail
build=$(realpath "$1")
work=$2
src=$(cd "$(dirname "$0")" && pwd)
fail() { echo "package_consumers: $*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"
work=$(realpath "$work")
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null

launcher=()
cmake_launcher=()
if command -v ccache >/dev/null; then
  # Paths relative to the clone in ccache's keys, as scripts/build.sh does.
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(realpath "$src/../..")} CCACHE_NOHASHDIR=1
  launcher=(ccache)
  cmake_launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

# GNUInstallDirs for the programs too.
for p in taskexecd taskexec; do
  [[ -x $prefix/bin/$p ]] || fail "$p not installed in bin/"
done
# Bash completion for each program, where bash-completion looks; each
# script defines its function and registers it.
for p in taskexecd taskexec taskexec-stress; do
  f=$prefix/share/bash-completion/completions/$p
  [[ -f $f ]] || fail "no bash completion for $p in share/bash-completion/completions/"
  bash -c "source '$f' && complete -p $p" >/dev/null || fail "$f does not register a completion for $p"
done

# The systemd units, naming the installed daemon (docs/operations.md).
for u in taskexecd@.service taskexecd@.socket; do
  [[ -f $prefix/lib/systemd/system/$u ]] || fail "$u not installed in lib/systemd/system/"
done
grep -q "^ExecStart=$prefix/bin/taskexecd " "$prefix/lib/systemd/system/taskexecd@.service" ||
  fail "taskexecd@.service does not run $prefix/bin/taskexecd"

# The exported targets: no absolute path, no definition or link option
# forced on the consumer, the library's own version.
targets=$(find "$prefix" -name 'taskexecTargets*.cmake')
[[ -n $targets ]] || fail "no taskexecTargets.cmake installed"
if grep -nE 'INTERFACE_[A-Z_]+ "(/|[^"]*;/)' \
    $targets; then
  fail "absolute paths in the exported targets"
fi
if grep -nE 'BOOST_ASIO_NO_DEPRECATED|z,now|INTERFACE_LINK_OPTIONS|/usr/lib|'"$build" $targets; then
  fail "the exported targets force flags or name this machine's files"
fi
pc=$(find "$prefix" -name taskexec.pc)
[[ -n $pc ]] || fail "no taskexec.pc installed"
version=$(sed -n 's/.*library_version = "\(.*\)".*/\1/p' "$src/../../libexec/include/taskexec/version.hpp")
pc_version=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --modversion taskexec)
[[ $pc_version == "$version" ]] || fail "taskexec.pc says $pc_version, version.hpp $version"

run_consumer() {  # name binary
  local out rc=0
  out=$("$2" 2>&1) || rc=$?
  echo "consumer $1: $out"
  [[ $rc -eq 0 && $out == *"/bin/true exited 0"* ]] || fail "consumer $1 failed (rc=$rc)"
}

for consumer in boost-log-first static; do
  cmake -S "$src" -B "$work/$consumer" -G Ninja -DCMAKE_BUILD_TYPE= \
    "-DCMAKE_PREFIX_PATH=$prefix" "-DCONSUMER=$consumer" "${cmake_launcher[@]}" >/dev/null ||
    fail "configuring consumer $consumer failed"
  cmake --build "$work/$consumer" >"$work/$consumer.log" 2>&1 ||
    { cat "$work/$consumer.log" >&2; fail "building consumer $consumer failed"; }
  run_consumer "$consumer" "$work/$consumer/consumer"
done
# (a) is not linked `-z now`, yet the library's calls (the launcher's child
# runs in the parent's memory until exec) are bound at load: GOT entries
# (GLOB_DAT), no lazy PLT slot.
if readelf -d "$work/boost-log-first/consumer" | grep -qE 'BIND_NOW|FLAGS.*NOW'; then
  fail "consumer (a) was linked -z now: the package forced it"
fi
if readelf -rW "$work/boost-log-first/consumer" | grep -E 'JUMP_SLOT.* (execve|dup2)@'; then
  fail "the library's calls go through lazily bound PLT slots"
fi
# (b) needs no shared library but glibc's.
if readelf -d "$work/static/consumer" | grep NEEDED | grep -E 'boost|cap|stdc\+\+|gcc_s'; then
  fail "the static consumer needs shared libraries"
fi

# (c) pkg-config and a plain compiler.
mkdir -p "$work/pkg-config"
read -ra flags <<<"$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs taskexec)"
# Compiled and linked apart, so ccache can keep the compilation.
"${launcher[@]}" g++ -std=c++20 -c "$src/consumer.cpp" "${flags[@]}" -o "$work/pkg-config/consumer.o" &&
  g++ "$work/pkg-config/consumer.o" "${flags[@]}" -o "$work/pkg-config/consumer" ||
  fail "building the pkg-config consumer failed: g++ -std=c++20 consumer.cpp ${flags[*]}"
run_consumer pkg-config "$work/pkg-config/consumer"
