#!/usr/bin/env bash
# Build the pinned mmwrs stack into a virtual environment, idempotently.
#
# The environment is cached outside the repository, keyed by the pinned versions,
# so a second run (or a second clone) skips the ~12 minute mmcv build. The repo's
# `.venv` is a symlink to it.
#
#   MMWRS_ENV_CACHE  where cached environments live (default ~/.cache/mmwrs)
#   PYTHON           interpreter to build from (default python3.11, else python3)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

# The pins. Changing any of them changes the cache key.
TORCH=2.13.0
MMCV=2.1.0
MMENGINE=0.10.7
MMDET=3.3.0
MMSEG=1.2.2
SETUPTOOLS_BUILD='setuptools<70'
SETUPTOOLS_RUN='setuptools>=77.0.3,<81'
# mmseg imports its multimodal tokenizer on registration, which needs these.
MMSEG_NEEDS='ftfy regex'
pins="py=$("$PYTHON" -c 'import sys;print("%d.%d"%sys.version_info[:2])') torch=$TORCH mmcv=$MMCV mmengine=$MMENGINE mmdet=$MMDET mmseg=$MMSEG $SETUPTOOLS_BUILD $SETUPTOOLS_RUN mmseg-needs=$MMSEG_NEEDS extras=$(cat "$repo/requirements/tests.txt" | tr '\n' ' ')"
key=$(printf '%s' "$pins" | sha1sum | cut -c1-12)
cache=${MMWRS_ENV_CACHE:-$HOME/.cache/mmwrs}
env="$cache/env-$key"

step() { printf '\n[setup_env] %s\n' "$*"; }
fail() { printf '\n[setup_env] FAILED: %s\n' "$*" >&2; exit 1; }

if [ ! -f "$env/.mmwrs-stack-complete" ]; then
  step "building the pinned stack into $env ($pins)"
  rm -rf "$env"
  mkdir -p "$cache"
  "$PYTHON" -m venv "$env" || fail "could not create a venv with $PYTHON"
  pip=("$env/bin/python" -m pip --disable-pip-version-check)
  install=("${pip[@]}" install)
  # The CPU wheel of torch lies on this machine's disk; the exact pin on every install
  # line keeps resolvers from fetching a multi-GB CUDA build.
  "${install[@]}" -q wheel ninja "torch==$TORCH" || fail "installing torch==$TORCH"
  "${install[@]}" -q "mmengine==$MMENGINE" "torch==$TORCH" || fail "installing mmengine==$MMENGINE"
  # mmcv's setup.py imports pkg_resources in a way setuptools>=70 breaks, while
  # torch 2.13 declares setuptools>=77: build mmcv under the old one, then move on.
  "${install[@]}" -q "$SETUPTOOLS_BUILD" || fail "installing $SETUPTOOLS_BUILD"
  step "building mmcv==$MMCV from source with CPU ops (about 12 minutes on 2 cores)"
  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    "${install[@]}" --no-build-isolation --no-binary mmcv "mmcv==$MMCV" "torch==$TORCH" \
    || fail "building mmcv==$MMCV (needs gcc and the Python headers)"
  # torch wants setuptools>=77; mmengine imports pkg_resources, gone in setuptools 81.
  "${install[@]}" -q "$SETUPTOOLS_RUN" "mmdet==$MMDET" "mmsegmentation==$MMSEG" \
    $MMSEG_NEEDS "mmcv==$MMCV" "torch==$TORCH" || fail "installing mmdet==$MMDET / mmsegmentation==$MMSEG"
  "${install[@]}" -q -r "$repo/requirements/tests.txt" "$SETUPTOOLS_RUN" "mmcv==$MMCV" \
    "torch==$TORCH" || fail "installing test requirements"
  if "${pip[@]}" list 2>/dev/null | grep -qi '^mmcv-lite'; then
    fail "mmcv-lite got installed beside mmcv; it shadows mmcv's compiled ops"
  fi
  "$env/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH')" \
    || fail "torch was replaced: $("$env/bin/python" -c 'import torch;print(torch.__version__)')"
  "$env/bin/python" -c "import mmcv.ops, mmdet, mmseg, mmengine, torch; print('stack ok:', torch.__version__, mmcv.__version__, mmengine.__version__, mmdet.__version__, mmseg.__version__)" \
    || fail "the built stack does not import"
  touch "$env/.mmwrs-stack-complete"
else
  step "reusing cached stack $env"
fi

# mmwrs itself is not installed into the shared environment: several checkouts
# (and CI clones) use it at once. tools/, the tests and the demo put their own
# checkout first on sys.path; `pip install -e .` is for using mmwrs elsewhere.
ln -sfn "$env" "$repo/.venv"
step "ready: $repo/.venv -> $env"
