#!/usr/bin/env bash
# The GPU check in one script, for a machine with CUDA (CI never runs it):
#   1. install drivelab (make install) and Ray (the `cluster` extra);
#   2. drivelab bench gpu: PPO env-steps/s on CUDA vs CPU, batched evaluation, CUDA export on CPU
#      -> benchmarks/results/gpu_check.json and .md (README's gpu_check table);
#   3. camera frames on all cores: drivelab bench env with EnvPool split over one process per
#      core pair (--processes), highway-fast and merge at 1024 envs
#      -> benchmarks/results/env_throughput_cores.json and .md;
#   4. the smoke suite (benchmarks/suites/smoke.yaml) timed as Ray tasks on this machine's CPUs
#      (--ray local: a Ray instance for that command only) and then one run after another locally.
# Usage, from anywhere: benchmarks/gpu_check.sh   (exits non-zero at the first failing step)
set -euo pipefail
cd "$(dirname "$0")/.."
export SDL_VIDEODRIVER="${SDL_VIDEODRIVER:-offscreen}"

make install
.venv/bin/pip install -q -c constraints.txt -e ".[cluster]"
BIN=.venv/bin

echo "== drivelab bench gpu"
"$BIN/drivelab" bench gpu

echo "== camera frames on $(nproc) cores: one process vs --processes $(( $(nproc) / 2 ))"
"$BIN/drivelab" bench env --scenarios highway-fast merge --num-envs 1024 --processes $(( $(nproc) / 2 )) \
    --seconds 5 --baseline-seconds 5 --out benchmarks/results/env_throughput_cores.json

# Each timing trains the suite from scratch in its own folder (a rerun would skip finished runs).
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
suite_in() {  # the smoke suite with its runs under $scratch/$1
    sed "s#^runs_dir: .*#runs_dir: $scratch/$1#" benchmarks/suites/smoke.yaml > "$scratch/$1.yaml"
    echo "$scratch/$1.yaml"
}
timed() {  # run a command, print its wall time [s]
    local start end
    start=$(date +%s.%N)
    "$@"
    end=$(date +%s.%N)
    python3 -c "print(f'wall time: {$end - $start:.1f} s')"
}

echo "== smoke suite on Ray (this machine: $(nproc) CPUs)"
timed "$BIN/drivelab" bench rl --suite "$(suite_in ray)" --ray local --out "$scratch/rl_ray.json"
echo "== smoke suite locally (one run after another)"
timed "$BIN/drivelab" bench rl --suite "$(suite_in local)" --no-progress --out "$scratch/rl_local.json"
echo "GPU results: benchmarks/results/gpu_check.json, benchmarks/results/gpu_check.md"
