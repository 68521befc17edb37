#!/usr/bin/env bash
# Reproduce the shipped drum model src/mambakit/weights/gm-drums/ (see its MODEL_CARD.md):
#   render FluidR3_GM's General MIDI drum kits (notes that are near copies of another
#   kit's clip skipped), hold out the "power" and "room" kits, train the tiny preset on
#   one CPU thread (resumable: rerun to continue; INIT=run-or-model fine-tunes it instead
#   of starting from random weights), fit the per-tag default envelopes, evaluate on the
#   held-out kits, and copy the model in.
# Usage: scripts/train-gm-drums.sh [MINUTES] [STEPS]
#   (env: FONT, DATA, RUN, EVAL, INIT, MAMBAKIT)
set -euo pipefail
MINUTES=${1:-120}
STEPS=${2:-1200}
FONT=${FONT:-/usr/share/sounds/sf2/FluidR3_GM.sf2}
# -v2: rendered with the near-copy filter (a render kept from before it holds the held-out
# kits' copies of standard-kit cymbals and hats; resuming a render keeps existing files)
DATA=${DATA:-data/gm-drums-v2}
RUN=${RUN:-runs/gm-drums}
EVAL=${EVAL:-out/gm-drums-eval}
INIT=${INIT:-}
MAMBAKIT=${MAMBAKIT:-mambakit}
HELDOUT_KITS="power room"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

$MAMBAKIT drums dataset-from-sf2 "$FONT" --out "$DATA"
rm -rf "$DATA-train" "$DATA-heldout"
mkdir -p "$DATA-train" "$DATA-heldout"
for kit in "$DATA"/*/; do
  name=$(basename "$kit")
  if [[ " $HELDOUT_KITS " == *" $name "* ]]; then dest="$DATA-heldout"; else dest="$DATA-train"; fi
  cp -r "$kit" "$dest/"
done
$MAMBAKIT drums train "$DATA-train" --out "$RUN" --preset tiny --steps "$STEPS" \
  --minutes "$MINUTES" --workers 0 --resume ${INIT:+--init "$INIT"}
$MAMBAKIT drums calibrate "$RUN"
$MAMBAKIT eval drums "$RUN" --real "$DATA-train" --heldout "$DATA-heldout" --limit 66 --speed \
  --out "$EVAL"
dest=src/mambakit/weights/gm-drums
mkdir -p "$dest"
cp "$RUN/config.json" "$RUN/model.safetensors" "$RUN/drum_defaults.json" "$dest/"
echo "copied the model into $dest; update $dest/MODEL_CARD.md from $EVAL/eval_drums.md"
