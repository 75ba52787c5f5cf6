#!/usr/bin/env bash
# The long-schedule study of issue 14 (docs/results.md), as resumable sweeps.
#
#   tools/analysis/long_schedule_study.sh PART [PART ...]
#
# PART (run from the repository root):
#   data           generate data/shapes64 (300 train / 200 val, 64 px) and data/shapes
#   fcn-sgd        tiny FCN, SGDM: lr {0.025,0.05,0.1,0.2} x wd {1e-4,5e-4,2e-3,5e-3} x seeds,
#                  and WRS at the same lrs x seeds                  (60 runs, 4-12 min each)
#   det-sgd        tiny Faster R-CNN, the same grid                 (60 runs, 4-6 min each)
#   fcn-adamw      tiny FCN, AdamW: lr {1e-3,4e-3} x wd {0.05,0.5} x seeds, and
#                  AdamW + WRS at the same lrs x seeds              (18 runs)
#   det-adamw      tiny Faster R-CNN, the same AdamW grid           (18 runs)
#   ablation-fcn   tiny FCN, WRS at lr 0.05: target_norm 'init' vs 1.0 x filter vs
#                  layer (the 1.0/filter cell and lr x0.5/x2 are in fcn-sgd)  (9 runs)
#   ablation-demo  the demo FCN (configs/demo, 128 px, 300 its), where WRS trailed:
#                  WD 5e-4 and WRS at lr {0.01,0.02,0.04}, plus the three WRS
#                  variants at lr 0.02                              (27 runs, ~11 min each)
#   collect        rebuild every results.md / results.json / results.png from the
#                  finished runs, and the ablation tables
#   plots          the mechanism figures (norm, lr/||w||^2, grad norm, angle, metric)
#                  of seed 0 into docs/figures/study_*
#
# Every part is a tools/analysis/sweep.py command: re-running it skips the runs with
# a done.json and restarts (--resume: resumes) the interrupted ones, so the study can
# be stopped at any time and carried over several sessions. Runs use one thread and
# nice -n 10. Two different parts may run at the same time (they train different
# runs; fcn-sgd and fcn-adamw share work_dirs/study/fcn, without a common run);
# never the same part twice at once.
#
# SEEDS="0" tools/analysis/long_schedule_study.sh fcn-sgd   does a one-seed pass
# first; the same command with the default SEEDS="0 1 2" later adds seeds 1 and 2.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
SEEDS=${SEEDS:-"0 1 2"}
OUT=${STUDY_DIR:-work_dirs/study}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONWARNINGS=ignore
FCN=configs/study/fcn_r18-w16-d8_shapes64.py
DET=configs/study/faster-rcnn_r18-w16_fpn_shapes64.py
DEMO_FCN=configs/demo/fcn_r18-d8_shapes.py
SGD=(--optimizers sgd --lrs 0.025 0.05 0.1 0.2 --decays 1e-4 5e-4 2e-3 5e-3)
ADAMW=(--optimizers adamw --lrs 1e-3 4e-3 --decays 0.05 0.5)
# Every monitored quantity each 50 iterations (NormMonitorHook leaves training
# bit-identical), so the grid's runs also give the mechanism curves.
COMMON=(--regularizers wrs --monitor-interval 50 --resume)

sweep() { nice -n 10 "$PY" tools/analysis/sweep.py "$@"; }
# shellcheck disable=SC2086  # SEEDS is a list
seeds() { echo --seeds $SEEDS; }

# WRSHook options of the ablation: custom_hooks.0 is the WRS overlay's hook.
variant_options() {
  case $1 in
    init_filter) echo custom_hooks.0.target_norm=init custom_hooks.0.granularity=filter ;;
    unit_layer) echo custom_hooks.0.target_norm=1.0 custom_hooks.0.granularity=layer ;;
    init_layer) echo custom_hooks.0.target_norm=init custom_hooks.0.granularity=layer ;;
  esac
}

ablation_table() {  # the ablation's results.json files -> one markdown table
  "$PY" - "$@" <<'EOF'
import json, os.path as osp, sys
print('| sweep | setting | metric | mean ± std (seeds) |\n|---|---|---|---|')
for path in sys.argv[1:]:
    if not osp.isfile(path):
        print(f'| {osp.dirname(path)} | not run | | |')
        continue
    results = json.load(open(path))
    for name, e in results['settings'].items():
        value = ('n/a' if e['mean'] is None else f"{e['mean']:.2f}"
                 + (f" ± {e['std']:.2f}" if e['std'] is not None else ' (one seed)'))
        print(f"| {osp.basename(osp.dirname(path))} | {name} | {results['metric']} "
              f"| {value} ({', '.join(map(str, e['seeds'])) or '-'}) |")
EOF
}

run_part() {
  case $1 in
    data)
      PYTHONPATH=. "$PY" tools/data/generate_shapes.py --out data/shapes64 \
        --num-train 300 --num-val 200 --img-size 64
      PYTHONPATH=. "$PY" tools/data/generate_shapes.py --out data/shapes ;;
    fcn-sgd) sweep $FCN --sweep-dir $OUT/fcn "${SGD[@]}" $(seeds) "${COMMON[@]}" ;;
    det-sgd) sweep $DET --sweep-dir $OUT/det "${SGD[@]}" $(seeds) "${COMMON[@]}" ;;
    fcn-adamw) sweep $FCN --sweep-dir $OUT/fcn "${ADAMW[@]}" $(seeds) "${COMMON[@]}" ;;
    det-adamw) sweep $DET --sweep-dir $OUT/det "${ADAMW[@]}" $(seeds) "${COMMON[@]}" ;;
    ablation-fcn)
      for v in init_filter unit_layer init_layer; do
        # shellcheck disable=SC2046
        sweep $FCN --sweep-dir $OUT/fcn_ablation/$v --optimizers sgd --lrs 0.05 --decays \
          $(seeds) "${COMMON[@]}" --cfg-options $(variant_options $v)
      done ;;
    ablation-demo)
      sweep $DEMO_FCN --sweep-dir $OUT/demo_fcn_ablation/base --optimizers sgd \
        --lrs 0.01 0.02 0.04 --decays 5e-4 $(seeds) --regularizers wrs --monitor-interval 10 --resume
      for v in init_filter unit_layer init_layer; do
        # shellcheck disable=SC2046
        sweep $DEMO_FCN --sweep-dir $OUT/demo_fcn_ablation/$v --optimizers sgd --lrs 0.02 \
          --decays $(seeds) --regularizers wrs --monitor-interval 10 --resume \
          --cfg-options $(variant_options $v)
      done ;;
    collect)
      for c in "fcn $FCN" "det $DET"; do
        set -- $c
        # Both optimizers in one table: the union of the sgd and adamw parts.
        sweep $2 --sweep-dir $OUT/$1 --optimizers sgd adamw --lrs sgd:0.025 sgd:0.05 sgd:0.1 sgd:0.2 \
          adamw:1e-3 adamw:4e-3 --decays sgd:1e-4 sgd:5e-4 sgd:2e-3 sgd:5e-3 adamw:0.05 \
          adamw:0.5 $(seeds) --regularizers wrs --collect
      done
      for v in init_filter unit_layer init_layer; do
        sweep $FCN --sweep-dir $OUT/fcn_ablation/$v --optimizers sgd --lrs 0.05 --decays \
          $(seeds) --regularizers wrs --collect
        sweep $DEMO_FCN --sweep-dir $OUT/demo_fcn_ablation/$v --optimizers sgd --lrs 0.02 \
          --decays $(seeds) --regularizers wrs --collect
      done
      sweep $DEMO_FCN --sweep-dir $OUT/demo_fcn_ablation/base --optimizers sgd \
        --lrs 0.01 0.02 0.04 --decays 5e-4 $(seeds) --regularizers wrs --collect
      echo '## Ablation, tiny FCN (WRS at lr 0.05 unless named; the 1.0/filter cell is fcn-sgd)'
      ablation_table $OUT/fcn_ablation/{init_filter,unit_layer,init_layer}/results.json
      echo '## Ablation, demo FCN'
      ablation_table $OUT/demo_fcn_ablation/{base,init_filter,unit_layer,init_layer}/results.json ;;
    plots)
      for m in fcn det; do
        r=$OUT/$m/runs
        "$PY" tools/analysis/plot_curves.py $r/sgd_lr0.05_wd{0.0001,0.0005,0.002}_seed0 \
          $r/sgd_lr0.05_wrs_seed0 --out-dir docs/figures/study_${m}_sgd \
          --labels "WD 1e-4" "WD 5e-4" "WD 2e-3" WRS
        "$PY" tools/analysis/plot_curves.py $r/adamw_lr0.001_wd{0.05,0.5}_seed0 \
          $r/adamw_lr0.001_wrs_seed0 --out-dir docs/figures/study_${m}_adamw \
          --labels "AdamW wd 0.05" "AdamW wd 0.5" "AdamW + WRS"
      done ;;
    *) echo "unknown part '$1'; parts: data fcn-sgd det-sgd fcn-adamw det-adamw" \
         "ablation-fcn ablation-demo collect plots" >&2; exit 2 ;;
  esac
}

[ $# -gt 0 ] || { sed -n '2,33p' "$0"; exit 2; }
for part in "$@"; do run_part "$part"; done
