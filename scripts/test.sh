#!/usr/bin/env bash
# Sets up a fresh machine (scripts/setup.sh) and runs every test.
# STAR_TEST_LOG=FILE: run go test -v and keep its whole output in FILE
# (.ci/run reads it to list skipped tests); the console shows it without
# the === RUN/PAUSE/CONT lines.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"
bash scripts/setup.sh
go vet ./...
if [ -n "${STAR_TEST_LOG:-}" ]; then
	go test -count=1 -timeout 20m -v ./... 2>&1 | tee "$STAR_TEST_LOG" | awk '!/^ *=== (RUN|PAUSE|CONT|NAME) /'
else
	go test -count=1 -timeout 20m ./...
fi
