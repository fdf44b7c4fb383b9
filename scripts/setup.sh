#!/usr/bin/env bash
# Sets up a fresh Debian machine to build and test star: Go toolchain on
# PATH, system packages, Go modules. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"
if ! command -v go >/dev/null; then
  echo "setup: Go is not installed (expected at /usr/local/go); install Go >= 1.26" >&2
  exit 1
fi
# System packages (only when missing; apt needs root): a C compiler for
# cgo, OpenMPI for distributed runs, OpenBLAS (the benchmarks' reference
# GEMM), and the tools the tests run: bash, timeout (coreutils), pgrep
# (procps), prlimit (util-linux), git (scripts/mutate).
need=()
command -v gcc >/dev/null || need+=(gcc)
command -v g++ >/dev/null || need+=(g++)          # the CUDA stand-in's kernels (nccl/standin)
command -v clang-14 >/dev/null || need+=(clang-14) # compile check of the CUDA kernels (layers/cuda)
command -v bash >/dev/null || need+=(bash)
command -v timeout >/dev/null || need+=(coreutils)
command -v pgrep >/dev/null || need+=(procps)
command -v prlimit >/dev/null || need+=(util-linux)
command -v git >/dev/null || need+=(git)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v mpirun >/dev/null || need+=(openmpi-bin)
[ -f /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h ] || [ -f /usr/include/x86_64-linux-gnu/mpi.h ] || pkg-config --exists ompi-c 2>/dev/null || need+=(libopenmpi-dev)
[ -f /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ] || need+=(libopenblas-dev)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
go mod download
go build -o bin/star .
echo "setup: built bin/star ($(go version | cut -d' ' -f3))" >&2
