#!/usr/bin/env bash
# The GPU check, in one go (at most 8 minutes on one GPU): the CUDA tests, the throughput benchmark up to
# N = 4096 for fresh and pool patches in float32 and bfloat16, and a short LSTM-DQN training. Everything goes
# under one folder: a log per part, the results, and summary.tsv / summary.md (each part's status and time).
#
#   bash benchmarks/gpu_check.sh [--device cuda] [--out DIR] [--quick] [--parts info,tests,throughput,agent]
#
# --out defaults to $OUT when set, else benchmarks/results/gpu. --device cpu --quick is the dry run that tests
# every part on a machine without a GPU (seconds per part instead of minutes). A part that fails or runs past
# its time limit is recorded and the next one runs; the script exits 1 if any part failed. The Python used is
# $PYTHON, else python.
set -euo pipefail

device=cuda
quick=0
parts=info,tests,throughput,agent
out=${OUT:-}
while [[ $# -gt 0 ]]; do
    case $1 in
        --device) device=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        --parts) parts=$2; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/.."
out=${out:-benchmarks/results/gpu}
mkdir -p "$out"
python=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [[ $quick == 1 ]]; then
    sizes=2; seconds=0.2; pool_size=64; psnr_patches=4; steps=64; num_envs=4
    limit_info=120; limit_tests=300; limit_throughput=600; limit_agent=300
else
    sizes=64,256,1024,4096; seconds=2; pool_size=100000; psnr_patches=; steps=20000; num_envs=256
    limit_info=20; limit_tests=100; limit_throughput=270; limit_agent=75
fi

failed=0
printf 'part\tstatus\tseconds\tlimit_s\n' > "$out/summary.tsv"

# run_part NAME LIMIT_S COMMAND...: run it with a time limit, its output in NAME.log; record how it ended.
run_part() {
    local name=$1 limit=$2 status=ok start rc=0
    shift 2
    if [[ ",$parts," != *",$name,"* ]]; then
        return 0
    fi
    start=$(date +%s)
    echo "== $name (limit ${limit}s)"
    timeout --kill-after=5 "$limit" "$@" > "$out/$name.log" 2>&1 || rc=$?
    if [[ $rc == 124 || $rc == 137 ]]; then
        status="timed out"
    elif [[ $rc != 0 ]]; then
        status="failed (exit $rc)"
    fi
    [[ $status == ok ]] || failed=1
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(( $(date +%s) - start ))" "$limit" >> "$out/summary.tsv"
    echo "   $status; last lines of $out/$name.log:"
    tail -n 3 "$out/$name.log" | sed 's/^/   | /'
}

run_part info "$limit_info" "$python" -c "
import json, platform, torch
info = {'torch': torch.__version__, 'cuda': torch.version.cuda, 'device': '$device', 'python': platform.python_version()}
if torch.cuda.is_available():
    info['gpu'] = torch.cuda.get_device_name(0)
    info['gpu_memory_gib'] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
print(json.dumps(info))
"
# On a GPU the CUDA tests run on it; the dry run runs the same tests on the CPU.
RESTORE_GYM_TEST_DEVICE=$device run_part tests "$limit_tests" "$python" -m pytest -q -m cuda tests/test_cuda.py \
    --junitxml="$out/tests.xml"
run_part throughput "$limit_throughput" "$python" -m benchmarks.throughput --devices "$device" --sizes "$sizes" \
    --seconds "$seconds" --pool-size "$pool_size" ${psnr_patches:+--psnr-patches "$psnr_patches"} \
    --out "$out/throughput"
run_part agent "$limit_agent" "$python" -m benchmarks.agent_speed --device "$device" --steps "$steps" \
    --num-envs "$num_envs" --out "$out/agent"

{
    echo "# GPU check ($device$([[ $quick == 1 ]] && echo ', quick dry run'))"
    echo
    echo "| part | status | seconds | limit |"
    echo "|---|---|---|---|"
    tail -n +2 "$out/summary.tsv" | awk -F'\t' '{printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4}'
} > "$out/summary.md"
echo "== results in $out (summary.md)"
exit "$failed"
