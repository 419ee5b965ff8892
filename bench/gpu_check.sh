#!/usr/bin/env bash
# The GPU check: run on a machine with an NVIDIA GPU (driver for CUDA 13.0 or newer), from the
# repository root, with the kit that `.ci/cuda kit` built here (carried along: the device tool's
# `carry: ["target/gpu-kit"]`):
#
#   bash bench/gpu_check.sh [KIT]
#
# 1. the GPU parity tests (crates/nn/tests/cuda.rs), a missing GPU being a failure;
# 2. bench/gpu_compare.py: labelscope vs PyTorch forward passes on the GPU.
# cuBLAS, cuRAND and the CUDA runtime are taken from the machine's Python `nvidia-*` packages (the
# ones PyTorch uses). Logs go to $OUT (the device tool's output folder) or ./gpu-check.
set -uo pipefail
kit="${1:-target/gpu-kit}"
out="${OUT:-gpu-check}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$out/gpu.txt"
libs="$(python3 -c 'import glob, os, nvidia
print(":".join(sorted({d for p in nvidia.__path__ for d in glob.glob(os.path.join(p, "*", "lib"))})))' 2>/dev/null)"
export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
LABELSCOPE_REQUIRE_CUDA=1 LABELSCOPE_NN_FIXTURES="$PWD/crates/nn/tests/fixtures" \
  "$kit/nn-cuda-tests" --test-threads 1 --nocapture 2>&1 | tee "$out/tests.log"
tests=${PIPESTATUS[0]}
PYTHONUNBUFFERED=1 python3 bench/gpu_compare.py "$kit/labelscope" 2>&1 | tee "$out/bench.md"
bench=${PIPESTATUS[0]}
echo "gpu_check: tests exit $tests, benchmark exit $bench" | tee -a "$out/gpu.txt"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
