#!/usr/bin/env bash
# The GPU check on a machine without the OpenMMLab stack or internet.
#
#   tools/benchmarks/gpu_check.sh OUT_DIR [gpu_check.py options]
#
# Pure-Python wheels in WHEELS (default .whl/ at the repository root) are
# installed into a private target first, so the sections that need mmengine or
# the adamp reference run too. Fetch them where pip reaches PyPI:
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation py --platform any -d .whl mmengine==0.10.7 addict termcolor \
#       yapf==0.40.2 platformdirs importlib-metadata==7.2.1 zipp tomli==2.0.1
#   python3 -m pip wheel --no-deps -w .whl adamp==0.3.0     # adamp ships an sdist only
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:?usage: gpu_check.sh OUT_DIR [gpu_check.py options]}
shift
wheels=${WHEELS:-$repo/.whl}
python=${PYTHON:-python3}
if compgen -G "$wheels/*.whl" > /dev/null; then
  site=$(mktemp -d)
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target "$site" "$wheels"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
PYTHONUNBUFFERED=1 exec "$python" "$repo/tools/benchmarks/gpu_check.py" --out "$out" "$@"
