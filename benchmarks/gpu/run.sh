#!/usr/bin/env bash
# Every GPU check of spx in one command, from the repository root of a GPU machine.
#
#   benchmarks/gpu/run.sh               # on the GPU machine: ~5 minutes, at most 8
#   benchmarks/gpu/run.sh --dry-run     # anywhere: every step on tiny sizes
#   benchmarks/gpu/run.sh --fetch-wheels  # here, before carrying the tree to the GPU
#
# The GPU machine has Python, torch, triton, numpy, transformers and pytest, but none of
# ray, mlflow, optuna, deepspeed, sqlalchemy or pydantic, and nothing can be downloaded
# there. The kernels and the worker code these steps call import none of the orchestration
# packages (the dry run blocks them to prove it: guard/sitecustomize.py); the trial config
# needs pydantic, which travels as the four small wheels below (about 2.8 MB), fetched
# here by --fetch-wheels into benchmarks/gpu/wheels/ (ignored by git; carry that path).
#
# Steps (each under its own time limit; one failing does not stop the others):
#   1. kernel tests, compiled by Triton for the GPU (not interpreted)
#   2. the worker conformance suite with every method's trial on the GPU
#   3. bench_compress.py --device cuda: torch references vs Triton, against one clone
#   4. 2:4 semi-structured matmul vs dense over transformer shapes and batch sizes
#   5. the masked training step of code-gpt at 0 / 50 / 90 % and 2:4
#   6. the SparseLoCo / DiLoCo outer step: one rank over NCCL, four over gloo
# STEPS="5 6" runs only those steps. Results: one markdown file, $OUT/gpu-results.md (default benchmarks/gpu/out/), and the
# full output beside it in $OUT/gpu-log.txt.
set -u
cd "$(dirname "$0")/../.."
HERE=benchmarks/gpu
PYTHON=${PYTHON:-python3}
WHEELS="pydantic pydantic-core annotated-types typing-inspection"

if [ "${1:-}" = "--fetch-wheels" ]; then
  mkdir -p "$HERE/wheels"
  for name in $WHEELS; do
    version=$("$PYTHON" -c "import importlib.metadata as m; print(m.version('$name'))") || exit 1
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d "$HERE/wheels" "$name==$version" || exit 1
  done
  ls -l "$HERE/wheels"
  exit 0
fi

DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-$HERE/out}
mkdir -p "$OUT"
RESULTS="$OUT/gpu-results.md"
LOG="$OUT/gpu-log.txt"
: >"$LOG"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
unset TRITON_INTERPRET  # compiled kernels on the GPU; the kernel tests set it without one

if ! "$PYTHON" -c "import pydantic" 2>/dev/null; then
  if ls "$HERE"/wheels/*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --target /tmp/spx-gpu-site "$HERE"/wheels/*.whl >>"$LOG" 2>&1
    export PYTHONPATH="$PYTHONPATH:/tmp/spx-gpu-site"
  else
    echo "pydantic is missing and $HERE/wheels/ is empty: run '$0 --fetch-wheels' first" >&2
  fi
fi
if [ $DRY = 1 ]; then
  export PYTHONPATH="$PWD/$HERE/guard:$PYTHONPATH"  # the GPU machine's missing packages
fi

{
  echo "# spx GPU checks ($([ $DRY = 1 ] && echo "dry run, tiny sizes" || echo "full run"))"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  "$PYTHON" - <<'EOF'
import platform, torch
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
try:
    import triton
    tv = triton.__version__
except ImportError:
    tv = "absent"
print(f"- python {platform.python_version()}, torch {torch.__version__}, triton {tv}")
print(f"- GPU: {gpu}; CPUs: {__import__('os').cpu_count()}")
EOF
  echo
} >"$RESULTS"

FAILED=()
STEPS=${STEPS:-1 2 3 4 5 6}  # e.g. STEPS="5 6" reruns only those
N=0
step() {  # step TITLE SECONDS COMMAND...: run, append its output to the results file
  local title=$1 limit=$2
  shift 2
  N=$((N + 1))
  case " $STEPS " in *" $N "*) ;; *) return 0 ;; esac
  local started=$SECONDS
  echo "== $title" | tee -a "$LOG"
  local body
  body=$(timeout --kill-after=10 "$limit" "$@" 2>>"$LOG")
  local rc=$?
  echo "$body" >>"$LOG"
  local took=$((SECONDS - started))
  {
    echo "## $title"
    echo
    echo "\`$*\` (${took} s, exit $rc$([ $rc = 124 ] && echo ", stopped at the ${limit} s limit"))"
    echo
    echo "$body"
    echo
  } >>"$RESULTS"
  if [ $rc != 0 ]; then
    FAILED+=("$title")
    echo "   failed (exit $rc); see $LOG" | tee -a "$LOG"
  fi
}

if [ $DRY = 1 ]; then
  step "Kernel tests (Triton interpreted: no GPU here)" 300 \
    "$PYTHON" -m pytest tests/kernels -q -x -p no:cacheprovider -k "not compile"
  step "Worker conformance, trials on the loop's device" 300 \
    "$PYTHON" -m pytest tests/workers/test_conformance.py tests/workers/test_device.py -q -x \
    -p no:cacheprovider -k "adamw or device or gpu"
  step "SparseLoCo compress: references vs Triton" 120 \
    "$PYTHON" benchmarks/bench_compress.py --params 200000 --hidden 64 --repeats 1
  step "2:4 semi-structured matmul vs dense" 60 \
    "$PYTHON" $HERE/bench_semistructured.py --dry-run
  step "Masked training step of code-gpt" 120 \
    "$PYTHON" $HERE/bench_train_step.py --dry-run
  step "Outer step over process groups" 180 \
    "$PYTHON" $HERE/bench_outer.py --dry-run --ranks 2
else
  step "Kernel tests (Triton compiled for the GPU)" 120 \
    "$PYTHON" -m pytest tests/kernels -q -p no:cacheprovider
  step "Worker conformance, every method's trial on the GPU" 90 \
    "$PYTHON" -m pytest tests/workers/test_conformance.py tests/workers/test_device.py -q \
    -p no:cacheprovider
  step "SparseLoCo compress: references vs Triton" 60 \
    "$PYTHON" benchmarks/bench_compress.py --device cuda --params 100000000 --repeats 5
  step "2:4 semi-structured matmul vs dense" 60 \
    "$PYTHON" $HERE/bench_semistructured.py
  step "Masked training step of code-gpt" 60 \
    "$PYTHON" $HERE/bench_train_step.py
  step "Outer step over process groups" 60 \
    "$PYTHON" $HERE/bench_outer.py --ranks 1,4
fi

if [ ${#FAILED[@]} = 0 ]; then
  echo "all steps passed; results in $RESULTS"
else
  printf 'failed: %s\n' "${FAILED[@]}" | tee -a "$RESULTS"
  exit 1
fi
