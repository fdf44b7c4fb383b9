#!/usr/bin/env bash
# Sets up a fresh machine (scripts/setup.sh) and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"
bash scripts/setup.sh
go vet ./...
go test -count=1 -timeout 20m ./...
