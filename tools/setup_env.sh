#!/usr/bin/env bash
# Build one tested mmwrs stack into a virtual environment, idempotently.
#
#   bash tools/setup_env.sh [pinned|classic]     (default: pinned)
#   bash tools/setup_env.sh classic --print-env  (print the cached env's path, build nothing)
#
# pinned:  torch 2.13.0 (the CPU wheel on disk), mmcv 2.1.0, mmengine 0.10.7, mmdet 3.3.0,
#          mmsegmentation 1.2.2                       -> .venv
# classic: torch 2.1.2 (PyPI, CUDA 12.1 build), numpy 1.26, mmcv 2.1.0, mmengine 0.10.3,
#          mmdet 3.3.0, mmsegmentation 1.2.2           -> .venv-classic
# The exact versions live in requirements/constraints/<stack>.txt (used only here and
# by CI; mmwrs itself declares ranges). Each environment is cached outside the
# repository, keyed by its pins, so a second run (or a second clone) skips the
# ~12 minute mmcv build; the repo's .venv / .venv-classic is a symlink to it.
#
# On a machine where torch sees a GPU, mmcv's setup.py compiles CUDA ops, which needs
# an nvcc matching torch's CUDA: tools/env_check.py decides before compiling, and the
# script stops with what is missing rather than fail in the compiler or leave CPU-only
# ops behind for a GPU demo. The ops are then run once on the device the demo uses.
#
#   MMWRS_ENV_CACHE  where cached environments live (default ~/.cache/mmwrs)
#   PYTHON           interpreter to build from (default python3.11, else python3)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
STACK=${1:-${STACK:-pinned}}
PRINT_ENV=0
[ "${2:-}" = --print-env ] && PRINT_ENV=1

step() { printf '\n[setup_env] %s\n' "$*" >&2; }
fail() { printf '\n[setup_env] FAILED: %s\n' "$*" >&2; exit 1; }

case "$STACK" in
  pinned)
    constraints="$repo/requirements/constraints/pinned-torch2.13.txt"
    link="$repo/.venv"
    # mmcv's setup.py imports pkg_resources in a way setuptools>=70 breaks, while
    # torch 2.13 declares setuptools>=77: build mmcv under the old one, then move on.
    SETUPTOOLS_BUILD='setuptools<70'
    SETUPTOOLS_RUN='setuptools>=77.0.3,<81' ;;
  classic)
    constraints="$repo/requirements/constraints/classic-torch2.1.txt"
    link="$repo/.venv-classic"
    # torch 2.1's cpp_extension imports pkg_resources.packaging, gone in setuptools 70.
    SETUPTOOLS_BUILD='setuptools<70'
    SETUPTOOLS_RUN='setuptools<70' ;;
  *) fail "unknown stack '$STACK': use pinned or classic" ;;
esac
[ -f "$constraints" ] || fail "missing $constraints"
pin() { sed -n "s/^$1==\([^ ]*\)$/\1/p" "$constraints"; }
TORCH=$(pin torch); MMCV=$(pin mmcv); MMENGINE=$(pin mmengine)
MMDET=$(pin mmdet); MMSEG=$(pin mmsegmentation)
[ -n "$TORCH" ] && [ -n "$MMCV" ] && [ -n "$MMENGINE" ] && [ -n "$MMDET" ] && [ -n "$MMSEG" ] \
  || fail "$constraints must pin torch, mmcv, mmengine, mmdet and mmsegmentation with =="
# Any further pins of the constraints file (numpy for classic) join the key.
others=$(grep -v -E '^(#|$|torch==|mmcv==|mmengine==|mmdet==|mmsegmentation==)' "$constraints" \
  | tr '\n' ' ' || true)
# mmseg imports its multimodal tokenizer on registration, which needs these.
MMSEG_NEEDS='ftfy regex'
# A machine with a GPU builds (or refuses) CUDA ops: a key of its own, so that a cache
# shared with CPU machines never hands it CPU-only ops.
ops=''
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then
  ops=' ops=gpu-machine'
fi
# The key string of the pinned stack is exactly the one earlier versions of this script
# used (same cache directory); the classic stack adds its extra pins.
pins="py=$("$PYTHON" -c 'import sys;print("%d.%d"%sys.version_info[:2])') torch=$TORCH mmcv=$MMCV mmengine=$MMENGINE mmdet=$MMDET mmseg=$MMSEG $SETUPTOOLS_BUILD $SETUPTOOLS_RUN mmseg-needs=$MMSEG_NEEDS extras=$(cat "$repo/requirements/tests.txt" | tr '\n' ' ')"
[ -n "$others" ] && pins="$pins also=$others"
pins="$pins$ops"
key=$(printf '%s' "$pins" | sha1sum | cut -c1-12)
cache=${MMWRS_ENV_CACHE:-$HOME/.cache/mmwrs}
env="$cache/env-$key"
if [ "$PRINT_ENV" = 1 ]; then echo "$env"; exit 0; fi

if [ ! -f "$env/.mmwrs-stack-complete" ]; then
  step "building the $STACK stack into $env ($pins)"
  start=$(date +%s)
  rm -rf "$env"
  mkdir -p "$cache"
  "$PYTHON" -m venv "$env" || fail "could not create a venv with $PYTHON"
  pip=("$env/bin/python" -m pip --disable-pip-version-check)
  # The constraints file on every install line keeps resolvers from replacing torch
  # (pinned: the CPU wheel on disk, not a multi-GB CUDA build) or numpy.
  install=("${pip[@]}" install -c "$constraints")
  "${install[@]}" -q wheel ninja "torch==$TORCH" $others || fail "installing torch==$TORCH $others"
  "${install[@]}" -q "mmengine==$MMENGINE" || fail "installing mmengine==$MMENGINE"
  # A step of its own: torch 2.13 declares setuptools>=77, which pip then only warns about.
  "${install[@]}" -q "$SETUPTOOLS_BUILD" || fail "installing $SETUPTOOLS_BUILD"
  # Decide CPU vs CUDA ops before compiling anything (see tools/env_check.py).
  ops_device=$("$env/bin/python" "$repo/tools/env_check.py" decide) \
    || fail "not building mmcv on this machine (reason above); $env is left incomplete and will be rebuilt"
  if [ "$ops_device" = cuda ]; then
    nvcc=$("$env/bin/python" -c "import sys; sys.path.insert(0, '$repo/tools'); import env_check; print(env_check.find_nvcc())")
    export CUDA_HOME=$(dirname "$(dirname "$nvcc")") FORCE_CUDA=1
  else
    export FORCE_CUDA=0
  fi
  step "building mmcv==$MMCV from source with $ops_device ops (about 12 minutes on 2 cores for CPU ops)"
  # --no-cache-dir: pip would otherwise reuse a wheel it built earlier against
  # another torch (another stack), whose compiled ops do not load here.
  mmcv_start=$(date +%s)
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    "${install[@]}" --no-cache-dir --no-build-isolation --no-binary mmcv "mmcv==$MMCV" \
    || fail "building mmcv==$MMCV (needs gcc and the Python headers)"
  step "mmcv built with $ops_device ops in $(( $(date +%s) - mmcv_start )) s"
  # torch 2.13 wants setuptools>=77; mmengine imports pkg_resources, gone in setuptools 81.
  "${install[@]}" -q "$SETUPTOOLS_RUN" "mmdet==$MMDET" "mmsegmentation==$MMSEG" \
    $MMSEG_NEEDS || fail "installing mmdet==$MMDET / mmsegmentation==$MMSEG"
  "${install[@]}" -q -r "$repo/requirements/tests.txt" "$SETUPTOOLS_RUN" \
    || fail "installing test requirements"
  if "${pip[@]}" list 2>/dev/null | grep -qi '^mmcv-lite'; then
    fail "mmcv-lite got installed beside mmcv; it shadows mmcv's compiled ops"
  fi
  "$env/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH')" \
    || fail "torch was replaced: $("$env/bin/python" -c 'import torch;print(torch.__version__)')"
  "$env/bin/python" -c "import mmcv.ops, mmdet, mmseg, mmengine, torch; print('stack ok:', torch.__version__, mmcv.__version__, mmengine.__version__, mmdet.__version__, mmseg.__version__)" \
    || fail "the built stack does not import"
  "$env/bin/python" "$repo/tools/env_check.py" verify-ops "$ops_device" \
    || fail "mmcv's ops do not run on $ops_device, the device the demo trains on"
  echo "ops=$ops_device" > "$env/.mmwrs-stack-complete"
  step "built the $STACK stack in $(( $(date +%s) - start )) s"
else
  step "reusing cached $STACK stack $env ($(cat "$env/.mmwrs-stack-complete"))"
fi

# mmwrs itself is not installed into the shared environment: several checkouts
# (and CI clones) use it at once. tools/, the tests and the demo put their own
# checkout first on sys.path; `pip install -e .` is for using mmwrs elsewhere.
ln -sfn "$env" "$link"
step "ready: $link -> $env"
