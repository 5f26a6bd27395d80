#!/usr/bin/env bash
# One GPU session, in the order issue 13 asks, in one command from the repository root (about 15 minutes
# on an H200; each step is capped so that a slow one cannot eat the next):
#   1. the gpu-marked tests (the analysis on CUDA against the CPU, CUDA training, bf16 numerics);
#   2. coatnet_0_rw_224 against timm's on the same weights: bf16 inference at batch 256 and a training
#      step, eager (the default comparison and both channels-last);
#   3. the same, both torch.compile'd;
#   4. the analysis speed ratios at 224;
#   5. the analysis path against timm (issue 23's table) in bf16 autocast, and in fp32.
# Results go to ${OUT:-benchmarks/results}/ (JSON in benchmarks/results_file.py's format, and markdown).
# Needs timm and torchvision importable
# (pip install --no-deps the wheels of requirements-test.txt where there is no network).
set -u
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
# -o addopts="-ra --strict-markers": one process (the image may lack pytest-xdist, which the suite's addopts use)
timeout 240 python3 -m pytest -m gpu -q -p no:cacheprovider -o addopts="-ra --strict-markers" 2>&1 | tail -40 | tee "$OUT/gpu_tests.txt"
timeout 240 python3 benchmarks/timm_speed.py --arch coatnet_0_rw_224 --device cuda --rounds 5 --iters 20 \
    --out "$OUT/timm_speed_cuda" 2>&1 | tail -20
timeout 300 python3 benchmarks/timm_speed.py --arch coatnet_0_rw_224 --device cuda --rounds 3 --iters 20 \
    --compile --out "$OUT/timm_speed_cuda_compiled" 2>&1 | tail -20
timeout 120 python3 benchmarks/analysis_speed.py --models coatnet_0_rw_224 --device cuda \
    --out "$OUT/analysis_speed_cuda" 2>&1 | tail -20
timeout 300 python3 benchmarks/analysis_speed.py --vs-timm --device cuda --bf16 --rounds 5 \
    --out "$OUT/analysis_vs_timm_cuda_bf16" 2>&1 | tail -20
timeout 240 python3 benchmarks/analysis_speed.py --vs-timm --device cuda --rounds 3 --archs coatnet_0_rw_224 \
    --out "$OUT/analysis_vs_timm_cuda_fp32" 2>&1 | tail -20
