#!/usr/bin/env bash
# Build the pinned mmwrs stack into a virtual environment, idempotently.
#
# The environment is cached outside the repository, keyed by the pinned versions,
# so a second run (or a second clone) skips the ~12 minute mmcv build. The repo's
# `.venv` is a symlink to it; mmwrs itself is (re)installed editable every run.
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
SETUPTOOLS='setuptools<70'
pins="py=$("$PYTHON" -c 'import sys;print("%d.%d"%sys.version_info[:2])') torch=$TORCH mmcv=$MMCV mmengine=$MMENGINE mmdet=$MMDET mmseg=$MMSEG $SETUPTOOLS extras=$(cat "$repo/requirements/tests.txt" | tr '\n' ' ')"
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
  # Build tooling first: mmcv's setup.py imports pkg_resources (setuptools<70) and
  # mmengine needs pkg_resources at run time (setuptools<81).
  "${pip[@]}" install -q "$SETUPTOOLS" wheel ninja || fail "installing build tools"
  # The CPU wheel of torch lies on this machine's disk; an exact pin keeps any
  # resolver from fetching a multi-GB CUDA build.
  "${pip[@]}" install -q "torch==$TORCH" || fail "installing torch==$TORCH"
  "${pip[@]}" install -q "mmengine==$MMENGINE" "torch==$TORCH" || fail "installing mmengine==$MMENGINE"
  step "building mmcv==$MMCV from source with CPU ops (about 12 minutes on 2 cores)"
  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    "${pip[@]}" install --no-build-isolation --no-binary mmcv "mmcv==$MMCV" "torch==$TORCH" \
    || fail "building mmcv==$MMCV (needs gcc and Python headers)"
  "${pip[@]}" install -q "mmdet==$MMDET" "mmsegmentation==$MMSEG" "mmcv==$MMCV" "torch==$TORCH" \
    || fail "installing mmdet==$MMDET / mmsegmentation==$MMSEG"
  "${pip[@]}" install -q -r "$repo/requirements/tests.txt" "torch==$TORCH" "mmcv==$MMCV" \
    || fail "installing test requirements"
  if "${pip[@]}" list 2>/dev/null | grep -qi '^mmcv-lite'; then
    fail "mmcv-lite got installed beside mmcv; it shadows mmcv's compiled ops"
  fi
  "$env/bin/python" -c "import mmcv.ops, mmdet, mmseg, mmengine, torch; print('stack ok:', torch.__version__, mmcv.__version__, mmengine.__version__, mmdet.__version__, mmseg.__version__)" \
    || fail "the built stack does not import"
  touch "$env/.mmwrs-stack-complete"
else
  step "reusing cached stack $env"
fi

# mmwrs itself, editable, from this checkout (cheap; re-run so a new clone wins).
"$env/bin/python" -m pip --disable-pip-version-check install -q --no-deps --no-build-isolation -e "$repo" \
  || fail "installing mmwrs from $repo"
ln -sfn "$env" "$repo/.venv"
step "ready: $repo/.venv -> $env"
