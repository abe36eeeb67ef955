#!/bin/bash
# Stage 3 of the shipped segmentation U-Net: one time-boxed session on a lent GPU (H200, 16 cores), end to end.
#
# It generates the PTB-V training and validation photos on all cores, measures how fast one run's data loader
# is, sizes a 6-epoch schedule to TRAIN_S seconds, and trains two runs at once on the GPU, both started from the
# stage-2 weights (weights/segmentation_unet.safetensors at commit 163ddba):
#   ft   - the same architecture, fine-tuned;
#   wide - a wider decoder (64,48,32,32), its encoder and first decoder block taken from stage 2 (--init-partial).
# The best weights, metrics and logs of both are copied to $OUT every 15 s.
#
# Needs: PTB-XL folds 1-9 (records100 + csv) as a tar.xz ($PTB_TAR) or a folder ($PTB_DIR); the machine there had
# no segmentation-models-pytorch, albumentations or wfdb, so their wheels travel in $WHEELS (cp312). To prepare,
# from the repository root:
#   tar cf - ptbxl_database.csv scp_statements.csv <records100 files of folds 1-9> | xz > .carry/ptbxl19.tar.xz
#   pip download --no-deps --only-binary=:all: --python-version 3.12 ... -d .whl segmentation_models_pytorch==0.6.0 \
#     albumentations==2.0.8 albucore==0.0.24 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 \
#     typing-inspection==0.4.5 stringzilla==5.3.2 simsimd==6.5.16 wfdb==4.3.1 typing_extensions==4.16.0
# Run (as on 2026-11-26): TRAIN_S=290 bash pipelines/train_segmentation_gpu.sh
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
DEV=${DEV:-cuda}; N_DEF=${N_DEF:-2400}; N_HARSH=${N_HARSH:-600}; N_VAL=${N_VAL:-60}; N_VALH=${N_VALH:-20}
GEN_W=${GEN_W:-16}; LW=${LW:-7}; TRAIN_S=${TRAIN_S:-290}; BATCH=${BATCH:-32}; WORK=${WORK:-/tmp/gpuwork}
PTB_TAR=${PTB_TAR:-.carry/ptbxl19.tar.xz}; WHEELS=${WHEELS:-.whl}

say() { echo "[$(date +%T)] $*"; }  # stdout only: $OUT takes at most 8 files
if [ -d "$WHEELS" ] && [ -z "${SKIP_WHL:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl \
    || { say "pip failed"; exit 3; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:-}:$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
rm -rf "$WORK"; mkdir -p "$WORK"
if [ -n "${PTB_DIR:-}" ]; then PTB=$PTB_DIR; else
  PTB=$WORK/ptb; mkdir -p "$PTB" && tar xJf "$PTB_TAR" -C "$PTB" || { say "untar failed"; exit 4; }
fi
python3 -c "import torch, segmentation_models_pytorch as smp, albumentations as A, wfdb, cv2, numpy
from ecgcore.train.segmenter import train
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'smp', smp.__version__, 'A', A.__version__, 'cv2', cv2.__version__, 'np', numpy.__version__)"
[ "${PIPESTATUS[0]}" = 0 ] || { say "imports failed"; exit 5; }
D=$WORK/ds
gen() { python3 -m pipelines.generate_ptb_v --ptbxl "$PTB" --layout seed-3x4,3x4+II,6x2,12x1 --workers "$GEN_W" "$@" \
          >>"$WORK/gen.log" 2>&1 || { say "generation failed: $*"; tail -c 2000 "$WORK/gen.log"; exit 6; }; }
say "generating"
gen --folds 9 --out $D/val_default -n "$N_VAL" --seed 201
gen --folds 9 --out $D/val_harsh -n "$N_VALH" --seed 202 --preset weights/presets/harsh.json
gen --folds 1-8 --out $D/train_default -n "$N_DEF" --seed 301
gen --folds 1-8 --out $D/train_harsh -n "$N_HARSH" --seed 302 --preset weights/presets/harsh.json
say "generated: $(ls $D/train_default | grep -c jpg) + $(ls $D/train_harsh | grep -c jpg) train photos"
TRAIN="$D/train_default,$D/train_harsh"; VAL="$D/val_default,$D/val_harsh"
RATE=$(python3 -m pipelines.train_segmentation --data "$TRAIN" --out "$WORK/probe" --batch-size "$BATCH" \
         --workers "$LW" --loader-rate 12 2>>"$WORK/probe.err" | python3 -c "import json,sys; print(json.load(sys.stdin)['batches_per_s'])")
say "loader rate ${RATE:-?} batches/s with $LW workers"
STEPS=$(python3 -c "r=float('${RATE:-3}' or 3); print(max(${MIN_STEPS:-60}, int(r * $TRAIN_S * 0.85 / 6)))")
say "steps per epoch $STEPS (6 epochs)"
run() { name=$1; shift
  timeout $((TRAIN_S + 120)) python3 -m pipelines.train_segmentation --data "$TRAIN" --val "$VAL" --val-samples 16 \
    --out "$WORK/runs/$name" --epochs 6 --steps-per-epoch "$STEPS" --batch-size "$BATCH" --crop 320 --device "$DEV" \
    --workers "$LW" --patience 99 --max-minutes "$(python3 -c "print(round($TRAIN_S/60*0.97, 2))")" "$@" \
    > "$WORK/$name.out" 2>&1
  say "$name exit $?"; }
run ft --init weights/segmentation_unet.safetensors --lr 6e-4 --seed 21 &
P1=$!
run wide --decoder-channels 64,48,32,32 --init weights/segmentation_unet.safetensors --init-partial --lr 1.5e-3 \
  --seed 22 &
P2=$!
copy() { for n in ft wide; do
    [ -f "$WORK/runs/$n/best.safetensors" ] && cp "$WORK/runs/$n/best.safetensors" "$OUT/${n}_best.safetensors.tmp" \
      && mv "$OUT/${n}_best.safetensors.tmp" "$OUT/${n}_best.safetensors"
    [ -f "$WORK/runs/$n/metrics.csv" ] && cp "$WORK/runs/$n/metrics.csv" "$OUT/${n}_metrics.csv"
    [ -f "$WORK/runs/$n/train.log" ] && cp "$WORK/runs/$n/train.log" "$OUT/${n}_train.log"
    [ -f "$WORK/runs/$n/best.json" ] && cp "$WORK/runs/$n/best.json" "$OUT/${n}_best.json"
  done; }
( while sleep 15; do copy; done ) &
COPIER=$!
wait $P1 $P2
kill $COPIER 2>/dev/null
copy
for n in ft wide; do
  tail -c 1500 "$WORK/$n.out" | tr '\r' '\n' | tail -4
  cut -d, -f1-4,8 "$WORK/runs/$n/metrics.csv" 2>/dev/null
done
rm -f "$OUT"/*.tmp
say "done"
