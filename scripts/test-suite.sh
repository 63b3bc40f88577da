#!/usr/bin/env bash
# The whole test suite (`make test`): the test files in groups side by side,
# one group per core (at most 4), each process on one libtorch thread.
#
# Why groups and one thread: most tests start nave-lab, whose libtorch keeps
# a thread per core spinning between parallel regions, so two processes on
# the same cores slow each other down several times over; one thread each,
# side by side, keeps every core busy instead. One thread also makes what a
# tiny model ends at after training the same on every machine (libtorch's
# reductions add in another order on another thread count).
#
#   scripts/test-suite.sh                 every test file
#   scripts/test-suite.sh -- --nocapture  arguments after -- go to every test binary
#
# Each group's output goes to target/test-logs/group-N.log and is printed
# when the group ends; the exit status is non-zero when any test failed.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
# Counted before OMP_NUM_THREADS is set: GNU nproc honours it.
cores=$(nproc 2>/dev/null || echo 1)
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
extra=()
if [[ ${1:-} == -- ]]; then
  shift
  extra=("$@")
fi

# Seconds each test file took in two groups side by side on the 2-core
# machine (benches/RESULTS.md, "The test suite"); a file not listed counts
# as 10 s. Only the balance of the groups depends on them.
declare -A seconds=(
  [audit]=305 [external]=226 [localize]=182 [train]=134 [reliability]=100
  [pytorch_parity]=78 [revise]=74 [study_script]=64 [slurm]=49 [zoo]=41
  [fetch]=28 [cli]=12 [hostile]=11 [fuzz]=11
)

groups=$((cores < 4 ? cores : 4))
groups=$((groups < 1 ? 1 : groups))

# Longest first, each to the group with the fewest seconds so far. The unit
# tests (--lib --bins) and the doc tests go to the first group.
mapfile -t files < <(for f in tests/*.rs; do
  name=$(basename "$f" .rs)
  echo "${seconds[$name]:-10} $name"
done | sort -rn)
declare -a load targets
for ((g = 0; g < groups; g++)); do
  load[g]=0
  targets[g]=""
done
load[0]=20
for entry in "${files[@]}"; do
  s=${entry%% *}
  name=${entry#* }
  best=0
  for ((g = 1; g < groups; g++)); do
    ((load[g] < load[best])) && best=$g
  done
  load[best]=$((load[best] + s))
  targets[best]+=" --test $name"
done

echo "nave-lab tests: building"
$CARGO test --release --no-run --quiet

logs=target/test-logs
mkdir -p "$logs"
start=$(date +%s)
pids=()
for ((g = 0; g < groups; g++)); do
  log="$logs/group-$g.log"
  # shellcheck disable=SC2086 # targets[g] is a list of --test NAME words
  if ((g == 0)); then
    echo "nave-lab tests: group $g (unit tests, doc tests,${targets[g]//--test /}), about ${load[g]} s alone"
    ( $CARGO test --release --no-fail-fast --lib --bins ${targets[g]} -- ${extra[@]+"${extra[@]}"} \
        && $CARGO test --release --doc -- ${extra[@]+"${extra[@]}"} ) >"$log" 2>&1 &
  else
    echo "nave-lab tests: group $g (${targets[g]//--test /}), about ${load[g]} s alone"
    $CARGO test --release --no-fail-fast ${targets[g]} -- ${extra[@]+"${extra[@]}"} >"$log" 2>&1 &
  fi
  pids+=($!)
done

failed=0
for ((g = 0; g < groups; g++)); do
  if wait "${pids[g]}"; then status=passed; else status=FAILED; failed=1; fi
  echo
  echo "===== group $g: $status ($(($(date +%s) - start)) s since the start) ====="
  cat "$logs/group-$g.log"
done

# The counts cargo printed per binary, summed (none found counts 0).
count() { { grep -Eho "[0-9]+ $1" "$logs"/group-*.log || true; } | awk '{s += $1} END {print s + 0}'; }
passed=$(count passed)
failures=$(count failed)
echo
echo "nave-lab tests: $passed passed, $failures failed, in $(($(date +%s) - start)) s ($groups groups side by side)"
exit "$failed"
