#!/usr/bin/env bash
# The paper's watermark study at its real size on one CUDA GPU, timed in one
# call of under 8 minutes, and extrapolated to the whole study
# (experiments/watermark-synthetic.yaml: ResNet50, 5,216 + 624 images at
# 224 px, augmentation x watermark x 3 seeds, 20 epochs, then the audit).
#
#   benches/full-size-study.sh [OUT]        results in OUT (default study-out/)
#
# What it runs, each stage timed, the GPU's busy fraction sampled throughout:
#   1. nave-lab doctor (CUDA must be linked and usable);
#   2. training throughput, nave-lab against PyTorch with the same settings
#      (benches/train_pytorch.py): ResNet50 fp32, bf16, bf16 channels-last;
#      ViT-S/16 bf16;
#   3. four slices of the study, a pair of runs each (with and without the
#      watermark): without augmentation one after the other (6 epochs: the
#      Figure 6 pair) and two at once (train --parallel 2), and the same with
#      augmentation (3 epochs each);
#   4. the audit of the 8 runs (200 probes, K = 10, layer3 + layer4);
#   5. the demo end to end on the device (experiments/demo.yaml: train,
#      audit with the blind verdict, revise the watermark run);
#   6. k-means on the audit's feature matrix (bench kmeans) and `localize` on a
#      generated VOC-layout set with one of the trained ResNet50s;
#   7. benches/study_summary.py: every measured figure, and the whole study's
#      time extrapolated from them with the arithmetic shown.
# OUT gets summary.md, summary.json, study.log, gpu-util.csv and results.tar.gz
# (every stage's output, metrics and audit.json; no weights).
#
# Environment:
#   NAVE_LAB  the binary (default target/release/nave-lab). On a machine other
#             than the one that built it, build it with `make gpu-binary`
#             (linked with libtorch_cuda) and the script points
#             LD_LIBRARY_PATH at $PYTHON's torch/lib when the binary does not
#             start without it.
#   PYTHON    a Python with torch 2.11 and torchvision (default python3).
#   DEVICE    default cuda (tiny: cpu).
#   SCALE     full (default), or tiny: the same stages at toy sizes on the CPU
#             (a couple of minutes), to try the script where there is no GPU.
#   WORK      where checkpoints and logs go (default: a new temporary folder).
#   BUDGET_S  stages not started by then are skipped (default 420 s for full,
#             none for tiny), and a stage still running GRACE_S (default 60)
#             seconds after it is stopped (SIGINT, as a user's Ctrl-C: the
#             audit keeps the runs it finished), so that the summary is
#             written inside one call of the GPU machine (at most 10
#             minutes) with room to spare. results.tar.gz is rewritten after
#             every stage, so a call cut short still brings back the
#             stages it finished.
#
# On a GPU machine that did not build it (torch 2.11.0+cu130 there):
#   make gpu-binary                       (here: target/gpu/release/nave-lab)
#   NAVE_LAB=target/gpu/release/nave-lab benches/full-size-study.sh "$OUT"
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mkdir -p "${1:-study-out}" && cd "${1:-study-out}" && pwd)
NAVE_LAB=${NAVE_LAB:-$root/target/release/nave-lab}
PYTHON=${PYTHON:-python3}
SCALE=${SCALE:-full}
WORK=${WORK:-$(mktemp -d -t nave-study.XXXXXX)}
mkdir -p "$WORK"
LOG=$OUT/study.log
: >"$LOG"
: >"$WORK/stages.tsv"

case "$SCALE" in
  full)
    DEVICE=${DEVICE:-cuda}
    SIZE=224 BATCH=64 STEPS=40
    FIG_EPOCHS=6 EPOCHS=3 PROBES=200 VOC_IMAGES=200
    STUDY_SETS=()
    DEMO_SETS=()
    DEMO_REVISE=()
    BUDGET_S=${BUDGET_S:-420}
    GRACE_S=${GRACE_S:-60}
    ;;
  tiny)
    DEVICE=${DEVICE:-cpu}
    SIZE=32 BATCH=4 STEPS=2
    FIG_EPOCHS=2 EPOCHS=2 PROBES=12 VOC_IMAGES=6
    STUDY_SETS=(--set model.width=8 --set dataset.image_size=64
      --set dataset.synthetic.train=96 --set dataset.synthetic.test=48
      --set train.batch_size=16)
    DEMO_SETS=(--set train.epochs=2 --set 'grid.seed=[0]' --set 'grid.augment=[false]'
      --set dataset.image_size=64 --set model.width=8)
    DEMO_REVISE=(--epochs 1)
    BUDGET_S=${BUDGET_S:-0}
    GRACE_S=${GRACE_S:-0}
    ;;
  *) echo "SCALE must be full or tiny, got '$SCALE'" >&2; exit 2 ;;
esac

# libtorch: the binary's own rpath, else $PYTHON's torch.
if ! "$NAVE_LAB" --version >/dev/null 2>&1; then
  torch_lib=$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') || {
    echo "error: $NAVE_LAB does not start and $PYTHON has no torch to take libtorch from" >&2; exit 1; }
  export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  "$NAVE_LAB" --version >/dev/null || { echo "error: $NAVE_LAB does not start with LD_LIBRARY_PATH=$torch_lib" >&2; exit 1; }
fi

# The GPU's utilisation and memory, a few samples a second, with the same
# clock as the stage times.
sampler_pid=
if command -v nvidia-smi >/dev/null && [ "$DEVICE" != cpu ]; then
  (
    while :; do
      line=$(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)
      printf '%s,%s\n' "$(date +%s.%N)" "${line// /}"
      sleep 0.2
    done
  ) >"$OUT/gpu-util.csv" &
  sampler_pid=$!
fi
trap '[ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null' EXIT

# stage NAME COMMAND...: stdout to NAME.out, stderr to NAME.err with a time
# stamp on every line (the training log's epoch lines date each epoch), the
# start, end and exit status to stages.tsv. A failed stage is recorded and
# the script goes on: the other figures are still worth having.
failed=0
script_start=$(date +%s)
stage() {
  local name=$1
  shift
  if [ "$BUDGET_S" -gt 0 ] && [ $(($(date +%s) - script_start)) -ge "$BUDGET_S" ]; then
    printf '== %s: skipped, the %s s budget is spent\n' "$name" "$BUDGET_S" | tee -a "$LOG"
    printf '%s\t-\t-\tskipped\n' "$name" >>"$WORK/stages.tsv"
    return
  fi
  printf '== %s: %s\n' "$name" "$*" | tee -a "$LOG"
  local t0 t1 rc limit cmd=("$@")
  # `timeout` runs programs, not shell functions.
  [ "$1" = nave ] && cmd=("$NAVE_LAB" --device "$DEVICE" "${@:2}")
  if [ "$BUDGET_S" -gt 0 ]; then
    limit=$((BUDGET_S + GRACE_S - ($(date +%s) - script_start)))
    cmd=(timeout --signal=INT --kill-after=15 "$limit" "${cmd[@]}")
  fi
  t0=$(date +%s.%N)
  { "${cmd[@]}" 2>&1 1>"$WORK/$name.out" | while IFS= read -r line; do
      printf '%s %s\n' "$(date +%s.%N)" "$line"
    done >"$WORK/$name.err"; }
  rc=${PIPESTATUS[0]}
  t1=$(date +%s.%N)
  printf '%s\t%s\t%s\t%s\n' "$name" "$t0" "$t1" "$rc" >>"$WORK/stages.tsv"
  cut -d' ' -f2- "$WORK/$name.err" | tail -n 40 >>"$LOG"
  awk -v a="$t0" -v b="$t1" -v rc="$rc" 'BEGIN { printf "   %.1f s, exit %s\n", b - a, rc }' | tee -a "$LOG"
  [ "$rc" = 124 ] && printf '   stopped: the budget and its %s s grace were spent\n' "$GRACE_S" | tee -a "$LOG"
  [ "$rc" = 0 ] || failed=$((failed + 1))
  pack_results
}

# Every stage's output, metrics and audit.json (no weights) into
# OUT/results.tar.gz; run after each stage and at the end.
pack_results() {
  (cd "$WORK" && {
    ls -1 -- *.out *.err stages.tsv 2>/dev/null
    find checkpoints reports localize demo-checkpoints demo-reports \( -name metrics.jsonl -o -name run.yaml \
      -o -name audit.json -o -name result.json -o -name summary.json -o -name revise.json \) 2>/dev/null
  } | tar -czf "$OUT/results.tar.gz" -T -)
}

nave() { "$NAVE_LAB" --device "$DEVICE" "$@"; }

stage doctor nave doctor --json

# 2. Throughput, nave-lab and PyTorch in turn, the same settings.
bench=(bench train --image-size "$SIZE" --batch-size "$BATCH" --steps "$STEPS")
torch_bench=("$PYTHON" "$root/benches/train_pytorch.py" --device "$DEVICE" --image-size "$SIZE" --batch-size "$BATCH" --steps "$STEPS")
stage tp-resnet50-fp32-nchw-nave nave "${bench[@]}" --arch resnet50 --memory-format contiguous
stage tp-resnet50-fp32-nchw-torch "${torch_bench[@]}" --arch resnet50
stage tp-resnet50-bf16-nchw-nave nave "${bench[@]}" --arch resnet50 --mixed-precision --memory-format contiguous
stage tp-resnet50-bf16-cl-nave nave "${bench[@]}" --arch resnet50 --mixed-precision --memory-format channels-last
stage tp-resnet50-bf16-cl-torch "${torch_bench[@]}" --arch resnet50 --bf16 --channels-last
stage tp-vit_s16-bf16-nave nave "${bench[@]}" --arch vit_s16 --mixed-precision
stage tp-vit_s16-bf16-torch "${torch_bench[@]}" --arch vit_s16 --bf16

# 3. Slices of the study.
CK=$WORK/checkpoints
train=(train "$root/experiments/watermark-synthetic.yaml" --checkpoints "$CK" "${STUDY_SETS[@]}")
stage train-aug0-s0-serial nave "${train[@]}" --set train.epochs=$FIG_EPOCHS --set 'grid.augment=[false]' --set 'grid.seed=[0]'
stage train-aug0-s1-parallel2 nave "${train[@]}" --set train.epochs=$EPOCHS --set 'grid.augment=[false]' --set 'grid.seed=[1]' --parallel 2
stage train-aug1-s0-serial nave "${train[@]}" --set train.epochs=$EPOCHS --set 'grid.augment=[true]' --set 'grid.seed=[0]'
stage train-aug1-s1-parallel2 nave "${train[@]}" --set train.epochs=$EPOCHS --set 'grid.augment=[true]' --set 'grid.seed=[1]' --parallel 2

# 4. The audit of every run trained above.
stage audit nave audit "$CK/watermark-synthetic" --reports "$WORK/reports" --probes "$PROBES" --pictures 4

# 5. The demo end to end on the device: train, audit with the blind verdict,
#    revise the flagged watermark run (the detector's and revise's tensor code
#    on CUDA; small images, so launch-bound rather than a throughput figure).
DEMO_CK=$WORK/demo-checkpoints
DEMO_REPORTS=$WORK/demo-reports
stage demo-train nave train "$root/experiments/demo.yaml" --checkpoints "$DEMO_CK" "${DEMO_SETS[@]}"
stage demo-audit nave audit "$DEMO_CK/demo" --reports "$DEMO_REPORTS"
stage demo-revise nave revise "$DEMO_REPORTS/demo" --run resnet18-aug0-wm1-s0 --force "${DEMO_REVISE[@]}"

# 6. k-means on the audit's matrix (ResNet50 layer3 + layer4 over the probes),
#    and localisation with a trained ResNet50.
kmeans_images=$PROBES
stage kmeans nave bench kmeans --arch resnet50 --image-size "$SIZE" --images "$kmeans_images" -k 10 --engines kmeans --seeds 3
stage voc-shapes "$PYTHON" "$root/benches/make_voc_shapes.py" "$WORK/voc" "$VOC_IMAGES"
stage localize nave localize --dataset voc07 --root "$WORK/voc" --run "$CK/watermark-synthetic/resnet50-aug0-wm0-s0" -k 5 --examples 0 --out "$WORK/localize"

[ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
sampler_pid=

# 7. The figures and the extrapolation.
"$PYTHON" "$root/benches/study_summary.py" "$WORK" "$OUT" --scale "$SCALE" | tee -a "$LOG"
summary_rc=${PIPESTATUS[0]}
pack_results
echo "results in $OUT (work folder $WORK)"
[ "$failed" = 0 ] && [ "$summary_rc" = 0 ]
