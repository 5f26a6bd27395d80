#!/usr/bin/env bash
# Train the two built-in demo checkpoints (coatnet/weights/demos/) side by side, one CPU thread each, and copy
# their files into the package. Identical but for --attention. About 70 minutes on 2 CPU cores; on a GPU,
# drop --threads and it takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
COATNET=${COATNET:-.venv/bin/coatnet}
mkdir -p runs
for mode in pre post; do
  "$COATNET" train --out "runs/demo-$mode" --model coatnet_pico --strides 2 1 1 2 1 --attention "$mode" \
    --epochs 7 --lr 2e-3 --warmup-epochs 0.5 --crop-padding 2 --hflip --drop-path 0.05 \
    --seed 0 --threads 1 > "runs/demo-$mode.log" 2>&1 &
done
wait
for mode in pre post; do
  target="coatnet/weights/demos/demo-$mode"
  mkdir -p "$target"
  cp "runs/demo-$mode/last.safetensors" "$target/model.safetensors"
  cp "runs/demo-$mode/metrics.json" "runs/demo-$mode/metrics.csv" "runs/demo-$mode/MODEL_CARD.md" "$target/"
  cat coatnet/weights/demos/CHOICES.md >> "$target/MODEL_CARD.md"
done
