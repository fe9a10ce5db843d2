#!/usr/bin/env bash
# Run a command as on a slower machine: a CPU-time quota (a share of the cores, through a Linux
# cgroup) and vector kernels capped at AVX2 (no AVX-512, no AMX), as on the 2-core AMD EPYC without
# bfloat16 that issue 19 measured. Pass -p precision=fp32 to `adgen run` as well: that machine has no
# bfloat16 instructions, so fine-tuning trains in float32 there.
#
#   scripts/slow_machine.sh [--cpus 0.45] -- ./run.sh -p precision=fp32
#
# --cpus is the CPU time the command may use per second of wall time, in cores (0.45: a 2-core
# machine whose cores run about 4.4 times slower than two full ones). Calibrate it with
# `scripts/slow_machine.sh --cpus C -- .venv/bin/python -m benchmarks.bench step`, which prints the
# seconds of one fine-tuning step of smollm2-135m (8 x 64 tokens, float32): the slow machine took
# about 13 s. Needs root and a cgroup cpu controller (v1 or v2); the emulation is approximate (memory
# bandwidth and caches are this machine's) and says nothing about a GPU.
set -euo pipefail
cpus=0.45
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cpus) cpus="$2"; shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
[[ $# -gt 0 ]] || { echo "usage: scripts/slow_machine.sh [--cpus C] -- COMMAND..." >&2; exit 2; }
period=100000
quota=$(python3 -c "print(int($cpus * $period))")
name="adgen-slow-$$"
if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then  # cgroup v2
    group=/sys/fs/cgroup/$name
    mkdir "$group"
    echo "$quota $period" > "$group/cpu.max"
elif [[ -d /sys/fs/cgroup/cpu ]]; then  # cgroup v1
    group=/sys/fs/cgroup/cpu/$name
    mkdir "$group"
    echo "$period" > "$group/cpu.cfs_period_us"
    echo "$quota" > "$group/cpu.cfs_quota_us"
else
    echo "slow_machine.sh: no cgroup cpu controller here; cannot limit CPU time" >&2
    exit 1
fi
cleanup() { rmdir "$group" 2>/dev/null || true; }
trap cleanup EXIT
echo $$ > "$group/cgroup.procs"  # this shell and everything it starts
export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
echo "slow_machine.sh: $cpus cores of CPU time, AVX2 kernels: $*" >&2
"$@"
status=$?
echo $$ > "$(dirname "$group")/cgroup.procs"  # out again, so the group can go
exit $status
