#!/usr/bin/env bash
# The GPU check: on a machine with one CUDA GPU and a CUDA build of torch, in under 8 minutes, prints one JSON
# object on stdout (progress goes to stderr):
#   - the CUDA-marked tests (pytest -m cuda),
#   - a ViT-L step of the vitl16-as2m preset at its per-GPU batch (bf16, flash SDPA, activation checkpointing),
#     eager and compiled: time, MFU against the GPU's bf16 peak, device reads per step, memory against the
#     cost model,
#   - FSDP2 on one GPU against the plain step, one attentive-probe epoch on the device.
#
#   bash benchmarks/gpu_check.sh [OUT.json]
#
# mjepa runs from src/ (no install). The decoders it imports (PyAV, soundfile) may be missing on a GPU image that
# cannot reach a package index; fetch wheels for it first on a machine that can, into .whl/ (git-ignored):
#   bash benchmarks/gpu_check.sh --prepare-wheels [PYTHON_VERSION, default 3.12]
# The check installs whatever .whl/ holds into a private folder before it starts.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--prepare-wheels" ]]; then
    version="${2:-3.12}"
    mkdir -p .whl
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    for package in av soundfile cffi pycparser; do
        python3 -m pip download --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --platform any -d .whl "$package" >&2 || exit 1
    done
    ls .whl >&2
    exit 0
fi

out_json="${1:-${OUT:-/tmp}/gpu_check.json}"
python="${PYTHON:-python3}"
site=/tmp/mjepa-gpu-check-site
if compgen -G ".whl/*.whl" > /dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        .whl/*.whl >&2 || exit 1
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if ! "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo '{"error": "no CUDA GPU visible to torch"}'
    exit 1
fi
if ! "$python" -c "import av, soundfile" 2>/dev/null; then
    echo '{"error": "PyAV or soundfile is missing: run bash benchmarks/gpu_check.sh --prepare-wheels where pip works, and bring .whl/ along"}'
    exit 1
fi

tests_log=/tmp/mjepa-gpu-check-tests.log
timeout 180 "$python" -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda.py > "$tests_log" 2>&1
tests_rc=$?
cat "$tests_log" >&2
timeout 300 "$python" benchmarks/gpu_check.py --json "$out_json.part" >&2
check_rc=$?

"$python" - "$tests_log" "$tests_rc" "$out_json.part" "$check_rc" "$out_json" <<'EOF'
import json, sys
log, tests_rc, part, check_rc, out = sys.argv[1:]
lines = [line for line in open(log).read().splitlines() if line.strip()]
result = {"cuda_tests": {"returncode": int(tests_rc), "summary": lines[-1] if lines else ""}}
try:
    result.update(json.load(open(part)))
except (OSError, ValueError):
    result["gpu_check"] = {"returncode": int(check_rc), "error": "benchmarks/gpu_check.py wrote no result"}
open(out, "w").write(json.dumps(result, indent=2))
print(json.dumps(result, indent=2))
EOF
