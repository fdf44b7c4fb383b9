#!/usr/bin/env bash
# Builds, here, what scripts/gpu-check.sh runs on a GPU machine (which has
# no Go): into bin/gpu (ignored by git; carry it there). The binaries
# depend on libc and libm only (-tags nompi), plus star-mpi (OpenMPI's
# libmpi) for two ranks under mpirun where the GPU machine has OpenMPI.
#   bash scripts/gpu-build.sh && (on the GPU machine) bash scripts/gpu-check.sh "$OUT"
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"
out=bin/gpu
rm -rf "$out"
mkdir -p "$out/models"
go build -tags nompi -ldflags "-s -w" -o "$out/star" .
go build -ldflags "-s -w" -o "$out/star-mpi" .
go test -c -tags nompi -ldflags "-s -w" -o "$out/cuda.test" ./layers/cuda
go test -c -tags nompi -ldflags "-s -w" -o "$out/nccl.test" ./nccl
shared=../shared/models/stories260K
if [ -f "$shared/stories260K.bin" ]; then
	cp "$shared/stories260K.bin" "$shared/tok512.bin" "$out/models/"
else
	echo "gpu-build: $shared not found: gpu-check.sh will skip the tiny-model runs" >&2
fi
du -sh "$out"
