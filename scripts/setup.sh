#!/usr/bin/env bash
# Install what taskexec needs to build and test on Debian 12. Idempotent:
# when everything is installed already it does not touch the network.
#   scripts/setup.sh             # build and test
#   scripts/setup.sh hardening   # also clang, libFuzzer, clang-tidy, cppcheck
set -euo pipefail

packages=(
  cmake ninja-build g++ ccache
  libboost1.81-dev libboost-json1.81-dev libboost-log1.81-dev
  libboost-test1.81-dev libboost-thread1.81-dev libboost-filesystem1.81-dev
  libcap-dev pkgconf libcli11-dev lld
)
if [[ ${1:-} == hardening ]]; then
  packages+=(clang-14 libclang-rt-14-dev clang-tidy-14 cppcheck)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "setup: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
