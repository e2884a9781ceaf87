#!/usr/bin/env bash
# The separate environment of the llmcompressor side of bench_posttrain.py: .venv-llmc at
# the repository root (ignored by git). llmcompressor pins its own transformers, so it does
# not share the main .venv. torch is installed first and alone, at the main .venv's version,
# so pip resolves the CPU wheel and llmcompressor's dependencies cannot pull a CUDA build.
#
#   bash benchmarks/posttrain/setup.sh            # or VENV=/elsewhere bash ...setup.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$ROOT/.venv-llmc}"
PY="$VENV/bin/python"
STAMP="$VENV/.installed"
if [[ -f "$STAMP" ]]; then
    echo "$VENV is set up (remove $STAMP to reinstall)"
    exit 0
fi
test -x "$PY" || python3 -m venv "$VENV"
"$PY" -m pip install -q torch==2.13.0
# The versions the recorded numbers were measured with (BENCHMARKS.md).
"$PY" -m pip install -q llmcompressor==0.14.0.1 transformers==5.17.0 compressed-tensors==0.19.0 \
    datasets==5.2.0 torch==2.13.0
"$PY" -c "import torch; assert torch.version.cuda is None, torch.__version__"
"$PY" "$ROOT/benchmarks/posttrain/llmc_side.py" --versions
touch "$STAMP"
