#!/usr/bin/env bash
# The long-schedule study of issue 14 (docs/results.md), as resumable sweeps.
#
#   tools/analysis/long_schedule_study.sh PART [PART ...]
#
# PART (run from the repository root):
#   data           generate data/shapes64 (300 train / 200 val, 64 px)
#   fcn-sgd        tiny FCN (1600 updates), SGDM: lr {0.1,0.2,0.4} x wd {1e-4,5e-4,2e-3,5e-3},
#                  and WRS at the same lrs, x seeds              (45 runs, ~1.5 min each)
#   det-sgd        tiny Faster R-CNN (800 updates), SGDM: lr {0.0125,0.025,0.05} x wd
#                  {5e-4,2e-3,5e-3,2e-2}, and WRS at the same lrs, x seeds
#                                                                (45 runs, ~1.7 min each)
#   fcn-adamw      tiny FCN, AdamW: lr {4e-3,1e-2,2e-2} x wd {0.05,0.5}, and AdamW + WRS at
#                  the same lrs, x seeds                         (27 runs)
#   det-adamw      tiny Faster R-CNN, the same AdamW grid        (18 runs)
#   fcn-adamw-up   the tiny FCN's AdamW grid one lr up (4e-2), where weight decay's best
#                  (2e-2) sat at the grid's edge                 (9 runs)
#   ablation-fcn   tiny FCN, WRS at lr 0.2: target_norm 'init' vs 1.0 x filter vs
#                  layer, and target_norm 0.5 (filter) (the 1.0/filter cell and lr
#                  x0.5/x2 are in fcn-sgd)                       (12 runs)
#   ablation-demo  the demo FCN (configs/demo, 128 px, 300 updates, where WRS trailed):
#                  WD 5e-4 at the config's lr 0.02, WRS at lr {0.01,0.02,0.04}, and WRS
#                  with target_norm 'init' at lr 0.02, x seeds   (15 runs, ~5 min each)
#   methods-fcn    issue 20: every other shipped method on the tiny FCN, SGDM at the fcn-sgd
#                  grid's lrs: WS, FixNorm, eps-shifted L2 on WS, SGDP; and AdamP at the
#                  AdamW grid's lrs (decoupled decay 0.05, AdamW's best), x seeds
#                                                                (45 runs, ~1.5 min each)
#   methods-det    the same on the tiny Faster R-CNN (no AdamP)  (36 runs, ~1.7 min each)
#   gap            the segmentor gap: weight decay's best cell (lr 0.2, wd 5e-4) with the
#                  monitor (seed 0: its norm curve gives configs/study/overlays/
#                  wrs_wd_curve.py), WRS at lr 0.2 with the unrescaled weights' decay at
#                  weight decay's other values, and WRS on the measured target schedule
#                                                                (13 runs)
#   fixnorm-cls    FixNorm's classifier norm (the overlay's 'init' is the stock head's
#                  tiny init norm): the tiny FCN at lr 0.2, classifier norm 1 and 4 x seeds
#                                                                (6 runs)
#   eps-lam-fcn    the eps-shifted L2's lam (eps_l2.py: 1e-4) at 1e-5 and 1e-3, on WS, at
#                  the tiny FCN's best ws_eps_l2 lr (0.4)       (6 runs)
#   eps-lam-det    the same on the tiny Faster R-CNN at its best lr (0.025) (6 runs)
#   collect        rebuild every results.md / results.json / results.png from the
#                  finished runs, and print the ablation table
#   methods-table  after collect: issue 20's table, one row per method (best / worst /
#                  median / spread, best vs weight decay's best), per model and optimizer,
#                  into docs/study/{fcn,det}_methods_sgd.md and fcn_methods_adamw.md
#   mechanism      per setting, mean over seeds: filter norm, lr/||w||^2 and grad norm near
#                  the end of the constant-lr phase over their values near its start
#   plots          the mechanism figures (norm, lr/||w||^2, grad norm, angle, training
#                  loss/accuracy and validation metric) of seed 0 into docs/figures/study_*
#
# Every part is a tools/analysis/sweep.py command per seed (seed 0 of the whole grid
# first, so an interrupted part leaves a complete one-seed table): re-running it skips
# the runs with a done.json and resumes the interrupted ones, so the study can be
# stopped at any time and carried over several sessions. Runs use one thread and
# nice -n 10. Two different parts may run at the same time (they train different
# runs; fcn-sgd, fcn-adamw and ablation-fcn share no run), never the same part twice.
#
# SEEDS="0" tools/analysis/long_schedule_study.sh fcn-sgd   does a one-seed pass.
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
# One lr grid per model for both methods, chosen from a one-seed pass so that
# each method's best lies inside it or at its edge (at lr 0.1 the detector
# collapsed under WRS and three of the four decays). The detector's schedule is half as long, so its decays are larger:
# both grids reach wd * sum(lr) / (1 - momentum) >= 1 (norms visibly move).
FCN_SGD=(--optimizers sgd --lrs 0.1 0.2 0.4 --decays 1e-4 5e-4 2e-3 5e-3)
DET_SGD=(--optimizers sgd --lrs 0.0125 0.025 0.05 --decays 5e-4 2e-3 5e-3 2e-2)
ADAMW=(--optimizers adamw --lrs 4e-3 1e-2 2e-2 --decays 0.05 0.5)
ADAMW_UP=(--optimizers adamw --lrs 4e-2 --decays 0.05 0.5)
ABLATION_LR=0.2
# Issue 20: the other methods over the same lr grid as WRS (each with the
# config's decay, 2e-3, on what it does not control); SGDP and AdamP bring their
# own optimizer (ReplaceOptimizerHook), so they sweep without --optimizers.
METHODS=(ws fixnorm ws_eps_l2)
FCN_LRS=(0.1 0.2 0.4)
DET_LRS=(0.0125 0.025 0.05)
ADAMW_LRS=(4e-3 1e-2 2e-2)
# AdamP's decay is decoupled, as AdamW's: AdamW's best value, not the overlay's 1e-4.
ADAMP_DECAY=custom_hooks.0.optimizer.weight_decay=0.05
GAP_DECAYS="1e-4 5e-4 5e-3"  # weight decay's grid, less the config's own 2e-3
EPS_LAMS="1e-5 1e-3"  # eps_l2.py's 1e-4 x0.1 and x10
FIXNORM_CLASSIFIER_NORMS="1 4"  # fixnorm_tune.py's base norm and its largest
VARIANTS="init_filter unit_layer init_layer half_filter"
DEMO_FCN=configs/demo/fcn_r18-d8_shapes.py
DEMO_LR=0.02  # the config's
DEMO_WRS_LRS="0.01 0.02 0.04"
# Every monitored quantity each 50 iterations (NormMonitorHook leaves training
# bit-identical), so the grid's runs also give the mechanism curves.
COMMON=(--regularizers wrs --monitor-interval 50 --resume)

sweep() { nice -n 10 "$PY" tools/analysis/sweep.py "$@"; }
# One sweep per seed, seed 0 of the whole grid first; --collect at the end
# rebuilds the results over every seed.
by_seed() {  # CONFIG [sweep.py options, which override COMMON's]
  local config=$1
  shift
  for seed in $SEEDS; do sweep "$config" "${COMMON[@]}" --seeds "$seed" "$@"; done
}
all_seeds() { echo --seeds 0 1 2; }
# results.{md,json,png} of one optimizer's grid -> results_<name>.*
collect_named() {  # NAME CONFIG DIR [sweep.py grid options]
  local name=$1 config=$2 dir=$3
  shift 3
  [ -d "$dir" ] || { echo "[study] $name: no runs in $dir (not run yet), not collected" >&2; return 0; }
  # shellcheck disable=SC2046
  sweep "$config" --sweep-dir "$dir" "$@" $(all_seeds) --collect >/dev/null
  for f in md json png; do mv "$dir/results.$f" "$dir/results_$name.$f"; done
}
collect_as() { collect_named "$@" --regularizers wrs; }  # a weight-decay grid and WRS
# The issue-20 table of one model (MODEL CONFIG LRS...): every method's sweep
# collected, then one row per method into docs/study/MODEL_methods_sgd.md.
methods_table() {
  local model=$1 config=$2 dir=$OUT/$1 lam_dir=$OUT/$1_eps_lam best_eps_lr=$3 lams=()
  shift 3
  collect_named sgd_methods $config $dir --optimizers sgd --lrs "$@" --decays \
    --regularizers "${METHODS[@]}"
  collect_named sgdp $config $dir --lrs "$@" --decays --regularizers sgdp
  for lam in $EPS_LAMS; do
    collect_named lam $config $lam_dir/lam$lam --optimizers sgd --lrs $best_eps_lr --decays \
      --regularizers ws_eps_l2
    [ -f $lam_dir/lam$lam/results_lam.json ] \
      && lams+=("$lam_dir/lam$lam/results_lam.json:sgd+ws_eps_l2 (lam $lam)")
  done
  mkdir -p docs/study
  "$PY" tools/analysis/methods_table.py $dir/results_sgd.json $dir/results_sgd_methods.json \
    $dir/results_sgdp.json "${lams[@]}" --reference sgdp=sgd+wd --digits 4 \
    | tee docs/study/${model}_methods_sgd.md
}
# Training-set curves beside the monitor's: the loss and the training batches'
# accuracy (segmentor: pixel accuracy of the decode head; detector: the RoI
# head's classification accuracy), as logged every 50 updates.
TRAIN_KEYS="loss decode.acc_seg:aAcc acc"

# Seed 0 at one lr (MODEL LR DECAY...): each decay and WRS at the same lr.
plot_sgd() {
  local model=$1 lr=$2 runs=$OUT/$1/runs dirs=() labels=()
  shift 2
  for wd in "$@"; do dirs+=("$runs/sgd_lr${lr}_wd${wd}_seed0"); labels+=("WD $wd"); done
  "$PY" tools/analysis/plot_curves.py "${dirs[@]}" "$runs/sgd_lr${lr}_wrs_seed0" \
    --labels "${labels[@]}" WRS --out-dir "docs/figures/study_${model}_sgd" \
    --train-keys $TRAIN_KEYS
}
plot_adamw() {  # AdamW at lr 4e-3: both decays and AdamW + WRS, when run
  local runs=$OUT/$1/runs
  [ -e "$runs/adamw_lr0.004_wrs_seed0/done.json" ] || return 0
  "$PY" tools/analysis/plot_curves.py "$runs"/adamw_lr0.004_wd{0.05,0.5}_seed0 \
    "$runs/adamw_lr0.004_wrs_seed0" --labels "AdamW wd 0.05" "AdamW wd 0.5" "AdamW + WRS" \
    --out-dir "docs/figures/study_$1_adamw" --train-keys $TRAIN_KEYS
}

# WRSHook options of the ablation: custom_hooks.0 is the WRS overlay's hook.
variant_options() {
  case $1 in
    init_filter) echo custom_hooks.0.target_norm=init custom_hooks.0.granularity=filter ;;
    unit_layer) echo custom_hooks.0.target_norm=1.0 custom_hooks.0.granularity=layer ;;
    init_layer) echo custom_hooks.0.target_norm=init custom_hooks.0.granularity=layer ;;
    # Filters held at norm 0.5: a 4x effective LR on the rescaled weights while
    # the lr of the rest (classifiers, norm layers, biases) stays, as weight
    # decay's shrinking norms give.
    half_filter) echo custom_hooks.0.target_norm=0.5 custom_hooks.0.granularity=filter ;;
  esac
}

ablation_table() {  # the ablation's results.json files -> one markdown table
  "$PY" - "$@" <<'EOF'
import json, os.path as osp, sys
WHAT = {'fcn': 'unit norm, per filter (the default)', 'init_filter': "'init', per filter",
        'unit_layer': 'unit norm, whole layer', 'init_layer': "'init', whole layer",
        'half_filter': '0.5, per filter', 'demo_fcn': 'demo FCN'}
print('| sweep | WRS target_norm, granularity | setting | metric | mean ± std (seeds) |\n'
      '|---|---|---|---|---|')
for path in sys.argv[1:]:
    if not osp.isfile(path):
        print(f'| {osp.dirname(path)} | | not run | | |')
        continue
    results = json.load(open(path))
    for name, e in results['settings'].items():
        if not name.endswith('wrs') and 'demo' not in path:  # fcn-sgd's decay rows
            continue
        value = ('n/a' if e['mean'] is None else f"{e['mean']:.2f}"
                 + (f" ± {e['std']:.2f}" if e['std'] is not None else ' (one seed)'))
        sweep = osp.basename(osp.dirname(path))
        print(f"| {sweep} | {WHAT.get(sweep, '')} | {name} | {results['metric']} "
              f"| {value} ({', '.join(map(str, e['seeds'])) or '-'}) |")
EOF
}

eps_lams() {  # CONFIG SWEEP_DIR LR: ws_eps_l2 at lr with the penalty's lam swept
  local config=$1 dir=$2 lr=$3
  for seed in $SEEDS; do
    for lam in $EPS_LAMS; do
      # custom_hooks.1: ws_eps_l2.py lists the WS hook first, the penalty second.
      sweep $config "${COMMON[@]}" --seeds "$seed" --sweep-dir $dir/lam$lam --optimizers sgd \
        --lrs $lr --decays --regularizers ws_eps_l2 --cfg-options custom_hooks.1.lam=$lam
    done
  done
}

run_part() {
  case $1 in
    data)
      PYTHONPATH=. "$PY" tools/data/generate_shapes.py --out data/shapes64 \
        --num-train 300 --num-val 200 --img-size 64 ;;
    fcn-sgd) by_seed $FCN --sweep-dir $OUT/fcn "${FCN_SGD[@]}" ;;
    det-sgd) by_seed $DET --sweep-dir $OUT/det "${DET_SGD[@]}" ;;
    fcn-adamw) by_seed $FCN --sweep-dir $OUT/fcn "${ADAMW[@]}" ;;
    det-adamw) by_seed $DET --sweep-dir $OUT/det "${ADAMW[@]}" ;;
    fcn-adamw-up) by_seed $FCN --sweep-dir $OUT/fcn "${ADAMW_UP[@]}" ;;
    ablation-fcn)
      for v in $VARIANTS; do
        # shellcheck disable=SC2046
        by_seed $FCN --sweep-dir $OUT/fcn_ablation/$v --optimizers sgd --lrs $ABLATION_LR \
          --decays --cfg-options $(variant_options $v)
      done ;;
    ablation-demo)
      # The demo FCN (128 px, 300 updates), where WRS trailed by 1.5-1.9 mIoU.
      by_seed $DEMO_FCN --sweep-dir $OUT/demo_fcn --lrs $DEMO_LR --decays 5e-4 \
        --regularizer-lrs $DEMO_WRS_LRS --monitor-interval 10
      by_seed $DEMO_FCN --sweep-dir $OUT/demo_fcn_ablation/init_filter --lrs $DEMO_LR \
        --decays --monitor-interval 10 --cfg-options $(variant_options init_filter) ;;
    methods-fcn)
      for seed in $SEEDS; do
        sweep $FCN "${COMMON[@]}" --seeds "$seed" --sweep-dir $OUT/fcn --optimizers sgd \
          --lrs "${FCN_LRS[@]}" --decays --regularizers "${METHODS[@]}"
        sweep $FCN "${COMMON[@]}" --seeds "$seed" --sweep-dir $OUT/fcn \
          --lrs "${FCN_LRS[@]}" --decays --regularizers sgdp
        sweep $FCN "${COMMON[@]}" --seeds "$seed" --sweep-dir $OUT/fcn \
          --lrs "${ADAMW_LRS[@]}" --decays --regularizers adamp --cfg-options $ADAMP_DECAY
      done ;;
    methods-det)
      for seed in $SEEDS; do
        sweep $DET "${COMMON[@]}" --seeds "$seed" --sweep-dir $OUT/det --optimizers sgd \
          --lrs "${DET_LRS[@]}" --decays --regularizers "${METHODS[@]}"
        sweep $DET "${COMMON[@]}" --seeds "$seed" --sweep-dir $OUT/det \
          --lrs "${DET_LRS[@]}" --decays --regularizers sgdp
      done ;;
    gap)
      sweep $FCN "${COMMON[@]}" --seeds 0 --sweep-dir $OUT/fcn --optimizers sgd \
        --lrs $ABLATION_LR --decays 5e-4 --regularizers
      # Its norms exactly (--start measured): the same effective LR on the rescaled weights.
      "$PY" tools/analysis/norm_schedule.py $OUT/fcn/runs/sgd_lr${ABLATION_LR}_wd0.0005_seed0 \
        --start measured --points 16 --overlay configs/study/overlays/wrs_wd_curve.py
      for seed in $SEEDS; do
        for wd in $GAP_DECAYS; do
          sweep $FCN "${COMMON[@]}" --seeds "$seed" --sweep-dir $OUT/fcn_gap/wrs_wd$wd \
            --optimizers sgd --lrs $ABLATION_LR --decays \
            --cfg-options optim_wrapper.optimizer.weight_decay=$wd
        done
        sweep $FCN "${COMMON[@]}" --seeds "$seed" --sweep-dir $OUT/fcn_gap/wd_curve \
          --optimizers sgd --lrs $ABLATION_LR --decays --regularizers wrs_wd_curve
      done ;;
    fixnorm-cls)
      for seed in $SEEDS; do
        for norm in $FIXNORM_CLASSIFIER_NORMS; do
          sweep $FCN "${COMMON[@]}" --seeds "$seed" --sweep-dir $OUT/fcn_gap/fixnorm_cls$norm \
            --optimizers sgd --lrs $ABLATION_LR --decays --regularizers fixnorm \
            --cfg-options custom_hooks.0.classifier_norm=$norm
        done
      done ;;
    eps-lam-fcn) eps_lams $FCN $OUT/fcn_eps_lam 0.4 ;;
    eps-lam-det) eps_lams $DET $OUT/det_eps_lam 0.025 ;;
    collect)
      collect_as sgd $FCN $OUT/fcn "${FCN_SGD[@]}"
      collect_as adamw $FCN $OUT/fcn "${ADAMW[@]}"
      collect_as sgd $DET $OUT/det "${DET_SGD[@]}"
      if ls $OUT/det/runs/adamw_* >/dev/null 2>&1; then
        collect_as adamw $DET $OUT/det "${ADAMW[@]}"
      fi
      for v in $VARIANTS; do
        # shellcheck disable=SC2046
        sweep $FCN --sweep-dir $OUT/fcn_ablation/$v --optimizers sgd --lrs $ABLATION_LR \
          --decays $(all_seeds) --regularizers wrs --collect >/dev/null
      done
      if [ -d $OUT/demo_fcn ]; then
        sweep $DEMO_FCN --sweep-dir $OUT/demo_fcn --lrs $DEMO_LR --decays 5e-4 \
          --regularizer-lrs $DEMO_WRS_LRS $(all_seeds) --regularizers wrs --collect >/dev/null
        sweep $DEMO_FCN --sweep-dir $OUT/demo_fcn_ablation/init_filter --lrs $DEMO_LR \
          --decays $(all_seeds) --regularizers wrs --collect >/dev/null
      fi
      echo "## Ablation, tiny FCN (WRS at lr $ABLATION_LR; the 1.0/filter cell is fcn-sgd's)"
      ablation_table $OUT/fcn/results_sgd.json \
        $OUT/fcn_ablation/{init_filter,unit_layer,init_layer,half_filter}/results.json
      if [ -d $OUT/demo_fcn ]; then
        echo "## Ablation, demo FCN"
        ablation_table $OUT/demo_fcn/results.json $OUT/demo_fcn_ablation/init_filter/results.json
      fi ;;
    methods-table)  # after collect: docs/study/*_methods_*.md
      methods_table fcn $FCN 0.4 "${FCN_LRS[@]}"
      methods_table det $DET 0.025 "${DET_LRS[@]}"
      collect_named adamw_up $FCN $OUT/fcn "${ADAMW_UP[@]}" --regularizers wrs
      collect_named adamp $FCN $OUT/fcn --lrs "${ADAMW_LRS[@]}" --decays --regularizers adamp
      "$PY" tools/analysis/methods_table.py $OUT/fcn/results_adamw.json \
        $OUT/fcn/results_adamw_up.json $OUT/fcn/results_adamp.json \
        --reference adamp=adamw+wd --digits 4 | tee docs/study/fcn_methods_adamw.md ;;
    mechanism)
      # Constant-lr phases: segmentor 100-1200, detector 100-600 (warm-up, x0.1 after).
      for runs in '^sgd_lr0.2_' '^adamw_lr0.004_'; do
        echo "## Tiny FCN, runs $runs: late / early over the constant-lr phase"
        "$PY" tools/analysis/mechanism_table.py $OUT/fcn --early 250 --late 1100 --window 100 \
          --runs "$runs" || true
      done
      for runs in '^sgd_lr0.025_'; do
        echo "## Tiny Faster R-CNN, runs $runs: late / early over the constant-lr phase"
        "$PY" tools/analysis/mechanism_table.py $OUT/det --early 200 --late 550 --window 50 \
          --runs "$runs" || true
      done ;;
    plots)
      plot_sgd fcn 0.2 0.0001 0.0005 0.002 0.005
      plot_sgd det 0.025 0.0005 0.002 0.005 0.02
      plot_adamw fcn
      plot_adamw det ;;
    *) echo "unknown part '$1'; parts: data fcn-sgd det-sgd fcn-adamw det-adamw" \
         "fcn-adamw-up ablation-fcn ablation-demo methods-fcn methods-det gap fixnorm-cls" \
         "eps-lam-fcn eps-lam-det" \
         "collect methods-table mechanism plots" >&2; exit 2 ;;
  esac
}

[ $# -gt 0 ] || { sed -n '2,/^set /{/^#/p}' "$0"; exit 2; }
for part in "$@"; do run_part "$part"; done
