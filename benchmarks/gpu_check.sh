#!/usr/bin/env bash
# The first run on a GPU: one script, bounded to a time budget (default 460 s), that measures
#   a. first chunk and RTF of the full-size CosyVoice2 (0.5B shapes, random weights), fp32 and fp16,
#      on this project's runtime and on upstream's orchestration class (cosyvoice_runtime.upstream);
#   b. the gate suites' streamed short/medium tests on the device (tiny model);
#   c. two quality save/rerun session pairs (tiny model): are seeded goldens bit-identical on this
#      device, and under torch.use_deterministic_algorithms(True)?
#   d. memory (CUDA allocated/peak/reserved, RSS) over 50 streams after 10 warm-up ones;
#   e. the seeded vs unseeded cost (benchmarks/seed_cost.py: whole streams; benchmarks/seed_sites.py:
#      the draw sites' work of one request, where the seed acts; when they exist).
# Each part runs under `timeout`; a failed or timed-out part is recorded and the next one runs.
# Writes summary.md and one JSON per part (a_speed.json ... e_seed_cost.json) under the output folder.
#
#   bash benchmarks/gpu_check.sh [--device cpu|cuda] [--quick] [--out DIR] [--budget SECONDS]
#
# --quick: the tiny model instead of the full one and the fewest rounds (the CPU dry run of
# tests/test_gpu_check.py). Output folder: --out, else $OUT, else reports/gpu_check.
# The interpreter: $PYTHON, else .venv/bin/python (bash scripts/bootstrap.sh), else python3.
# The full-size model is built once into $COSY_GPU_CHECK_MODELS (default ${TMPDIR:-/tmp}/cosy-gpu-check),
# outside the output folder (about 1 GB), and reused by a rerun.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

device=cuda
quick=0
out=${OUT:-reports/gpu_check}
budget=460
argv="$*"
while [ $# -gt 0 ]; do
  case $1 in
    --device) device=${2:?--device needs cpu or cuda}; shift 2 ;;
    --device=*) device=${1#*=}; shift ;;
    --quick) quick=1; shift ;;
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    --budget) budget=${2:?--budget needs seconds}; shift 2 ;;
    --budget=*) budget=${1#*=}; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (expected --device cpu|cuda, --quick, --out DIR, --budget S)" >&2
       exit 2 ;;
  esac
done
case $device in cpu|cuda) ;; *) echo "gpu_check.sh: --device '$device': expected cpu or cuda" >&2; exit 2 ;; esac
case $budget in ''|*[!0-9]*) echo "gpu_check.sh: --budget '$budget': expected whole seconds" >&2; exit 2 ;; esac

py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
# This checkout's packages first, whatever the venv has installed.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
logs="$out/logs"
mkdir -p "$logs"
parts="$out/parts.tsv"
: > "$parts"
# A rerun into the same folder never reads the last run's files as its own.
rm -rf "$out"/[a-e]_*.json "$out/b_gate" "$out/c_quality" "$out/e_seed_cost"
# The device machine has no network: nothing may wait on a hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# Part limits: shares of the budget (the default 460 s fits the 8 minutes with start-up; a slow or
# shared machine gives a larger --budget). --quick runs one quality pair (with deterministic algorithms:
# it takes every code path the plain pair does) and the fewest rounds.
lim_a=$(( budget * 40 / 100 )) lim_b=$(( budget * 10 / 100 )) lim_c=$(( budget * 30 / 100 ))
lim_d=$(( budget * 9 / 100 )) lim_e=$(( budget * 8 / 100 ))
if [ "$quick" = 1 ]; then
  size=tiny rounds=1 text=short gate_k="test_modes and test_stream and short-en and zero_shot" rtf_repeat=1
  quality_k="test_stream_sounds_the_same and zero_shot and short-en" warmup=2 streams=5 pairs=2 pairs_c=1 sites_reps=6
else
  size=full rounds=3 text=medium gate_k="test_modes and test_stream and (short-en or medium-en)" rtf_repeat=3
  quality_k="(zero_shot and short-en) or voice_conversion" warmup=10 streams=50 pairs=6 pairs_c=2 sites_reps=100
fi
fp16=both   # on a machine without CUDA the fp16 rows say "skipped: no CUDA"
start=$(date +%s)

left() { echo $(( budget - ($(date +%s) - start) )); }

# run_part NAME LIMIT CMD...: the command under `timeout`, bounded by what is left of the budget too;
# its exit code, seconds, limit and log go to parts.tsv for the summary.
run_part() {
  local name=$1 limit=$2; shift 2
  local l; l=$(left)
  [ "$l" -lt "$limit" ] && limit=$l
  if [ "$limit" -lt 10 ]; then
    echo "== $name: skipped, $l s of the budget left"
    return 0
  fi
  echo "== $name (limit $limit s, $(left) s of the budget left)"
  local t0 rc; t0=$(date +%s.%N)
  PART_LIMIT=$limit timeout -k 10 "$limit" "$@" > "$logs/$name.log" 2>&1
  rc=$?
  local secs; secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$secs" "$limit" "$logs/$name.log" >> "$parts"
  echo "   exit $rc after $secs s"
}

"$py" benchmarks/gpu_check.py env --out "$out" --device "$device" > "$logs/env.log" 2>&1 \
  || echo "env: exit $? (see $logs/env.log)"

# -- a: the full-size model (tiny with --quick): build once, then the timings -------------------------
part_a() {
  local model build_s=""
  if [ "$size" = tiny ]; then
    model=$("$py" -c "from cosyvoice_runtime.tiny import default_model_dir; print(default_model_dir(2))") || return 3
  else
    local models=${COSY_GPU_CHECK_MODELS:-${TMPDIR:-/tmp}/cosy-gpu-check}
    model="$models/cosyvoice2-$size-seed0"
    if [ ! -f "$model/cosyvoice2.yaml" ]; then
      rm -rf "$model"
      local t0; t0=$(date +%s.%N)
      "$py" -m cosyvoice_runtime.tiny "$model" --version 2 --size "$size" || return 3
      build_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    fi
  fi
  # What is left of this part's limit after the build, less a margin for the last round and the write.
  local spent=$(( $(date +%s) - part_start )) max
  max=$(( PART_LIMIT - spent - 25 ))
  [ "$max" -lt 5 ] && max=5
  "$py" benchmarks/gpu_check.py speed --out "$out" --device "$device" --model "$model" --size "$size" \
    ${build_s:+--build-s "$build_s"} --rounds "$rounds" --text "$text" --fp16 "$fp16" --max-seconds "$max"
}
export -f part_a
part_start=$(date +%s)
export py out device size rounds text fp16 part_start
run_part a_speed "$lim_a" bash -c part_a

# -- b: the gate suites' streamed short/medium tests ---------------------------------------------------
# --quick checks the script, not the machine: the timing thresholds wide open (as benchmarks/before_after.py).
gate_env=(COSY_GATE_RTF_REPEAT="$rtf_repeat")
[ "$quick" = 1 ] && gate_env+=(COSY_GATE_MAX_RTF=1000 COSY_GATE_MAX_GAP_MS=600000 COSY_GATE_PREBUFFER_MS=600000)
run_part b_gate "$lim_b" env "${gate_env[@]}" "$py" -m pytest suites -q -p no:cacheprovider \
  --cosy-device "$device" -k "$gate_k" --cosy-report "$out/b_gate/report" \
  --cosy-baseline-dir "$out/b_gate/baselines" --junitxml "$out/b_gate/junit.xml"
b_rc=$(awk -F'\t' '$1=="b_gate"{print $2}' "$parts")
[ -n "$b_rc" ] && "$py" benchmarks/gpu_check.py gate --out "$out" --device "$device" --report "$out/b_gate/report" \
  --junit "$out/b_gate/junit.xml" --selection "$gate_k" --rc "${b_rc:-1}" >> "$logs/b_gate.log" 2>&1

# -- c: quality goldens, saved then rerun; plain and with deterministic algorithms ---------------------
quality_pair() {  # NAME SESSIONS_AFTER [pytest args...]: a fresh baseline dir, a save session, a rerun session
  local name=$1 after=$2; shift 2
  local dir="$out/c_quality/$name"
  rm -rf "$dir"; mkdir -p "$dir"
  local common=(suites/test_quality.py -q -p no:cacheprovider --cosy-device "$device" -k "$quality_k"
                --cosy-baseline-dir "$dir/baselines" "$@")
  # Each session may take what is left of the part, less 20 s for each session still to come.
  timeout -k 5 "$(session_limit $(( after + 1 )))" "$py" -m pytest "${common[@]}" --cosy-save-baseline \
    --cosy-no-report > "$dir/save.log" 2>&1
  local save_rc=$?
  printf '{"save_rc": %d}\n' "$save_rc" > "$dir/rc.json"
  timeout -k 5 "$(session_limit "$after")" "$py" -m pytest "${common[@]}" --cosy-report "$dir/rerun-report" \
    > "$dir/rerun.log" 2>&1
  local rerun_rc=$?
  printf '{"save_rc": %d, "rerun_rc": %d}\n' "$save_rc" "$rerun_rc" > "$dir/rc.json"
  echo "$name: save exit $save_rc, rerun exit $rerun_rc"
}
session_limit() {
  local t=$(( part_start_c + PART_LIMIT - 10 - 20 * $1 - $(date +%s) ))
  [ "$t" -lt 5 ] && t=5
  echo "$t"
}
part_c() {
  part_start_c=$(date +%s)
  [ "$pairs_c" -gt 1 ] && quality_pair plain 2
  CUBLAS_WORKSPACE_CONFIG=:4096:8 COSY_NONDETERMINISM_LOG="$out/c_quality/deterministic/nondeterministic_ops.log" \
    quality_pair deterministic 0 -p benchmarks.deterministic
}
export -f quality_pair session_limit part_c
export quality_k pairs_c
run_part c_quality "$lim_c" bash -c part_c
sessions=(--skipped-session "plain=--quick runs one pair")
[ "$pairs_c" -gt 1 ] && sessions=(--session "plain=$out/c_quality/plain/rerun-report")
grep -q '^c_quality' "$parts" && "$py" benchmarks/gpu_check.py goldens --out "$out" --device "$device" \
  --selection "$quality_k" "${sessions[@]}" \
  --session "deterministic=$out/c_quality/deterministic/rerun-report,$out/c_quality/deterministic/nondeterministic_ops.log" \
  >> "$logs/c_quality.log" 2>&1

# -- d: memory over the soak streams -------------------------------------------------------------------
run_part d_soak "$lim_d" "$py" benchmarks/gpu_check.py soak --out "$out" --device "$device" \
  --warmup "$warmup" --streams "$streams" --max-seconds $(( lim_d - 8 ))

# -- e: what a seed costs (benchmarks/seed_cost.py, written by another issue item) ----------------------
if [ -f benchmarks/seed_cost.py ]; then
  # Both write their JSON into one folder; the part fails if either fails.
  run_part e_seed_cost "$lim_e" bash -c '"$1" benchmarks/seed_cost.py --device "$2" --pairs "$3" --out "$4" &&
    { [ ! -f benchmarks/seed_sites.py ] || "$1" benchmarks/seed_sites.py --device "$2" --reps "$5" --streams 2 --out "$4"; }' \
    _ "$py" "$device" "$pairs" "$out/e_seed_cost" "$sites_reps"
  e_rc=$(awk -F'\t' '$1=="e_seed_cost"{print $2}' "$parts")
  [ -n "$e_rc" ] && "$py" benchmarks/gpu_check.py seed --out "$out" --device "$device" --results "$out/e_seed_cost" \
    --rc "${e_rc:-1}" >> "$logs/e_seed_cost.log" 2>&1
else
  "$py" benchmarks/gpu_check.py seed --out "$out" --device "$device" --results "$out/e_seed_cost" \
    --skipped "benchmarks/seed_cost.py is not in this checkout" > "$logs/e_seed_cost.log" 2>&1
fi

total=$(( $(date +%s) - start ))
"$py" benchmarks/gpu_check.py summary --out "$out" --device "$device" --parts "$parts" --argv "$argv" \
  --total-s "$total" --budget-s "$budget"
echo "gpu_check: $total s of the $budget s budget; files in $out"
