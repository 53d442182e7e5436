#!/usr/bin/env bash
# Sums cargo's per-binary "test result:" lines into one closing line: "tests: N passed, N failed".
set -euo pipefail
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$1"
