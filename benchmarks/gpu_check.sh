#!/usr/bin/env bash
# One check of lrtune on a lent GPU machine (issue 23): the machine and versions, the `gpu`
# tests (tests/gpu), then the packing benchmark (benchmarks/bench_gpu.py --quick) when it
# is there. Run from the repository root, with $OUT a folder whose contents come back:
#
#     OUT=/some/folder bash benchmarks/gpu_check.sh
#
# Writes to $OUT: env.txt (nvidia-smi, versions), setup.log (only when an environment had
# to be made), gpu-tests.log and gpu-tests.xml (JUnit), bench_gpu.log and bench_gpu.jsonl,
# and summary.json (each stage's exit code and seconds, the interpreter, torch/CUDA, the
# test counts). Every stage runs under `timeout` (SIGINT first, so pytest still writes its
# report), a failed stage does not stop the next, and the whole script ends within
# GPU_CHECK_BUDGET seconds (default 540: 9 minutes). It exits 0 once the summary is written:
# read the exit codes in summary.json. Without CUDA the tests skip (with the reason) and the
# benchmark is not run.
#
# The interpreter: the first of python3 and .venv/bin/python that imports lrtune's
# dependencies and sees a GPU; else one that imports torch, lightning and optuna, with a
# virtual environment built on it (--system-site-packages, its torch kept) for the rest;
# else a fresh .venv: pip install torch (the CUDA build of the default index), then
# pip install -e ".[dev]". lrtune itself is imported from this folder (PYTHONPATH).
set -u

cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BUDGET=${GPU_CHECK_BUDGET:-540}
START=$SECONDS
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

CORE="import torch, lightning, optuna"
FULL="import torch, lightning, optuna, optuna_integration, optuna_dashboard, torchmetrics, pydantic, yaml, sklearn, plotly, typer, pytest"

STAGES=()  # JSON objects, one per stage

say() { echo "gpu_check: $*"; }
left() { echo $((BUDGET - (SECONDS - START))); }
json_str() { # a JSON string literal (backslashes, quotes and control characters escaped)
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\t'/ }
    printf '"%s"' "$s"
}

# run_stage NAME MAX_SECONDS LOG CMD...: CMD under timeout (at most MAX_SECONDS, and never
# past the budget less a 10 s reserve), output to LOG; records the exit code (124: timed out).
run_stage() {
    local name=$1 max=$2 log=$3
    shift 3
    local limit
    limit=$(($(left) - 10))
    ((limit > max)) && limit=$max
    if ((limit < 15)); then
        say "$name: skipped, no time left in the ${BUDGET}s budget"
        STAGES+=("{\"name\": $(json_str "$name"), \"rc\": null, \"seconds\": 0, \"note\": \"skipped: no time left\"}")
        return 0
    fi
    say "$name: running (timeout ${limit}s, log $log)"
    local begin=$SECONDS rc
    timeout -s INT -k 20 "$limit" "$@" >"$log" 2>&1
    rc=$?
    local took=$((SECONDS - begin)) note=""
    ((rc == 124)) && note="timed out after ${limit}s"
    say "$name: exit code $rc after ${took}s${note:+ ($note)}; last lines of $log:"
    tail -n 40 "$log" | sed 's/^/    /'
    STAGES+=("{\"name\": $(json_str "$name"), \"rc\": $rc, \"seconds\": $took, \"timeout\": $limit, \"log\": $(json_str "$log"), \"note\": $(json_str "$note")}")
    return 0
}

skip_stage() { # NAME WHY
    say "$1: skipped: $2"
    STAGES+=("{\"name\": $(json_str "$1"), \"rc\": null, \"seconds\": 0, \"note\": $(json_str "skipped: $2")}")
}

imports() { "$1" -c "$2" >/dev/null 2>&1; }
sees_gpu() { "$1" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; }

# ------------------------------------------------------------------ the machine
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(hostname)  repo: $ROOT"
    echo "commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset>}  cpus: $(nproc 2>/dev/null)"
    echo "--- nvidia-smi"
    if command -v nvidia-smi >/dev/null 2>&1; then
        timeout 30 nvidia-smi 2>&1
        timeout 30 nvidia-smi --query-gpu=index,name,memory.total,memory.used,driver_version \
            --format=csv 2>&1
    else
        echo "nvidia-smi: not found"
    fi
    echo "--- python3: $(command -v python3 || echo none) $(python3 --version 2>&1)"
} 2>&1 | tee "$OUT/env.txt"

# ------------------------------------------------------------------ the interpreter
candidates=()
command -v python3 >/dev/null 2>&1 && candidates+=("$(command -v python3)")
[ -x "$ROOT/.venv/bin/python" ] && candidates+=("$ROOT/.venv/bin/python")

PY=""
for want in full+gpu core+gpu full core; do # a GPU first: a CPU torch would skip every test
    for cand in "${candidates[@]}"; do
        case $want in
        full+gpu) imports "$cand" "$FULL" && sees_gpu "$cand" && PY=$cand ;;
        core+gpu) imports "$cand" "$CORE" && sees_gpu "$cand" && PY=$cand ;;
        full) imports "$cand" "$FULL" && PY=$cand ;;
        core) imports "$cand" "$CORE" && PY=$cand ;;
        esac
        [ -n "$PY" ] && break 2
    done
done
[ -n "$PY" ] || want=none
say "interpreter: ${PY:-none found} ($want)"

# A venv with lrtune's dependencies: on BASE (keeping its torch, lightning and optuna with
# --system-site-packages) or fresh (pip install torch first). Needs the package index.
SETUP='set -x
base=$1 venv=$2 site=$3
if [ ! -x "$venv/bin/python" ]; then "$base" -m venv $site "$venv" || exit 1; fi
if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
    "$venv/bin/pip" install torch || exit 1
fi
"$venv/bin/pip" install -e "$ROOT[dev]"'
export ROOT

case $want in
full+gpu | full) ;; # nothing to install
*)
    base=$(command -v python3 || true)
    site=""
    if [ -n "$PY" ]; then # it has torch, lightning and optuna: keep them, add the rest
        base=$PY
        site="--system-site-packages"
    fi
    venv="$ROOT/.venv"
    if [ -x "$venv/bin/python" ] && [ "$venv/bin/python" != "$PY" ]; then
        venv="$ROOT/.venv-gpu" # leave an existing .venv (a CPU one, say) alone
    fi
    if [ -n "$base" ]; then
        run_stage setup 240 "$OUT/setup.log" bash -c "$SETUP" setup "$base" "$venv" "$site"
        if imports "$venv/bin/python" "$FULL"; then PY="$venv/bin/python"; fi
    else
        skip_stage setup "no python3 on this machine"
    fi
    ;;
esac
PY=${PY:-python3}

INFO=$("$PY" - <<'EOF' 2>/dev/null
import json, platform
info = {"python_version": platform.python_version()}
try:
    import torch
    info.update(torch=torch.__version__, cuda=torch.version.cuda,
                cudnn=torch.backends.cudnn.version(), cuda_available=torch.cuda.is_available())
    info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    info["bf16"] = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
except Exception as error:  # noqa: BLE001
    info["torch_error"] = repr(error)
for name in ("lightning", "optuna", "torchmetrics"):
    try:
        info[name] = __import__(name).__version__
    except Exception as error:  # noqa: BLE001
        info[name] = f"missing: {error!r}"
print(json.dumps(info))
EOF
)
INFO=${INFO:-"{}"}
{
    echo "--- interpreter: $PY"
    echo "$INFO"
} | tee -a "$OUT/env.txt"
CUDA_OK=0
case $INFO in *'"cuda_available": true'*) CUDA_OK=1 ;; esac
((CUDA_OK)) || say "WARNING: torch sees no CUDA device here: the gpu tests will all skip"

# ------------------------------------------------------------------ the gpu tests
run_stage gpu-tests 330 "$OUT/gpu-tests.log" \
    "$PY" -m pytest -v -rs -m gpu tests/gpu -p no:cacheprovider --durations=15 \
    -o faulthandler_timeout=240 --junitxml="$OUT/gpu-tests.xml"

TESTS="null"
if [ -f "$OUT/gpu-tests.xml" ]; then
    suite=$(grep -o '<testsuite [^>]*>' "$OUT/gpu-tests.xml" | head -n 1)
    count() {
        local n
        n=$(echo "$suite" | sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p")
        echo "${n:-null}"
    }
    TESTS="{\"tests\": $(count tests), \"failures\": $(count failures), \"errors\": $(count errors), \"skipped\": $(count skipped)}"
    say "gpu tests: $TESTS"
fi

# ------------------------------------------------------------------ the benchmark
if [ ! -f benchmarks/bench_gpu.py ]; then
    skip_stage bench-gpu "benchmarks/bench_gpu.py is not there"
elif ((!CUDA_OK)); then
    skip_stage bench-gpu "no CUDA device"
else
    run_stage bench-gpu 600 "$OUT/bench_gpu.log" \
        "$PY" benchmarks/bench_gpu.py --quick --out "$OUT/bench_gpu.jsonl"
fi

# ------------------------------------------------------------------ the summary
{
    echo "{"
    echo "  \"script\": \"benchmarks/gpu_check.sh\","
    echo "  \"seconds\": $((SECONDS - START)),"
    echo "  \"budget\": $BUDGET,"
    echo "  \"python\": $(json_str "$PY"),"
    echo "  \"env\": $INFO,"
    echo "  \"tests\": $TESTS,"
    echo "  \"stages\": ["
    for i in "${!STAGES[@]}"; do
        sep=","
        ((i == ${#STAGES[@]} - 1)) && sep=""
        echo "    ${STAGES[$i]}$sep"
    done
    echo "  ]"
    echo "}"
} >"$OUT/summary.json"
say "done in $((SECONDS - START))s; summary:"
cat "$OUT/summary.json"
exit 0
