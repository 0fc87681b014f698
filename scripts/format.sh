#!/usr/bin/env bash
# Apply .clang-format to every C++ file (or, with --check, fail on a diff).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=(-i)
[[ "${1:-}" == "--check" ]] && mode=(--dry-run --Werror)
git ls-files '*.cpp' '*.hpp' | xargs clang-format "${mode[@]}"
