#!/usr/bin/env bash
# Usage: scripts/gpu-check.sh OUTDIR
#
# One prepared run on a GPU machine (no network needed): installs gpudl from this tree in editable mode (offline; the
# kernels live in the top-level kernels/ folder, which only an install maps to gpudl.kernels), records the machine
# (nvidia-smi, versions), runs the gpu-marked tests (tests/test_train_step.py captures real CUDA graphs there),
# two LeNet-5 epochs with --graph auto and off, then `gpudl bench` on the GPU beside PyTorch. OUTDIR gets five files:
# summary.txt, tests-gpu.log, bench.log, bench/bench.json and details.tar.gz (junit xml, install and training logs,
# versions, nvidia-smi, bench.png). The summary says how many gpu tests passed, failed and were skipped, and whether
# the LeNet-5 epoch ran as replayed CUDA graphs (report.json's "graphed" and "replayed_steps", and any notice of a
# fall-back to eager steps; on a GPU an epoch that was not graphed fails the run). It also runs on a machine without
# a GPU, where the gpu tests report as skipped and the epoch runs on the CPU (eagerly, by design).
# Exit status: 0 when no step failed (skips are fine), else 1.
#
# Environment: PYTHON (default python3; a virtual environment's python gets the editable install itself, any other
# a throwaway environment that sees its packages), STEP_TIMEOUT seconds per step (default 480), GPU_CHECK_CPU_TESTS=1
# to run the CPU tests too, GPU_CHECK_BENCH_DEVICE (default cuda; "cpu" to try the script on a machine without a GPU),
# GPU_CHECK_BENCH_ARGS (options for gpudl bench; default --quick, the short run; set it empty for the full sizes),
# GPU_CHECK_PYTEST_ARGS (more options for the gpu tests, e.g. "--timeout 90" where pytest-timeout is installed),
# GPU_CHECK_COMMIT (the commit to name in the summary, where the tree was copied without its current git metadata).
set -u

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
STEP_TIMEOUT=${STEP_TIMEOUT:-480}
cd "$ROOT" || exit 2
export PYTHONDONTWRITEBYTECODE=1
SUMMARY="$OUT/summary.txt"
failed=0

note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME COMMAND...: run with a time limit, log to OUT/NAME.log, note the outcome. pytest's 5 (nothing collected)
# counts as success.
step() {
    local name=$1; shift
    local start=$SECONDS rc
    timeout "$STEP_TIMEOUT" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    local outcome="ok"
    if [ $rc -eq 5 ]; then outcome="nothing collected"
    elif [ $rc -eq 124 ]; then outcome="TIMED OUT after ${STEP_TIMEOUT}s"; failed=1
    elif [ $rc -ne 0 ]; then outcome="FAILED (rc $rc)"; failed=1
    fi
    note "$(printf '%-12s %-24s %4ds  %s' "$name" "$outcome" $((SECONDS - start)) "$(tail -n 1 "$OUT/$name.log")")"
}

: >"$SUMMARY"
note "gpudl gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname) in $ROOT"
if [ -n "${GPU_CHECK_COMMIT:-}" ]; then
    note "commit $GPU_CHECK_COMMIT (as GPU_CHECK_COMMIT names it)"
elif commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); then
    git -C "$ROOT" diff --quiet HEAD 2>/dev/null || commit="$commit (with local changes)"
    note "commit $commit"
fi
# The editable install: into PY when it is a virtual environment's, else into a throwaway one on top of PY's packages
# (the machine's python stays untouched); where that cannot install, a link tree stands in for it.
if ! "$PY" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
    VENV="$(mktemp -d)/venv"
    "$PY" -m venv --system-site-packages "$VENV" >"$OUT/venv.log" 2>&1 && PY="$VENV/bin/python"
fi
if "$PY" -m pip install --no-deps --no-build-isolation --no-index -e "$ROOT" >"$OUT/install.log" 2>&1 &&
        "$PY" -c 'import gpudl.kernels' >>"$OUT/install.log" 2>&1; then
    note "install      editable install of the tree into $("$PY" -c 'import sys; print(sys.prefix)')"
else
    # No usable install (setuptools too old or missing): a tree of links gpudl/* plus gpudl/kernels -> kernels/, run
    # from its own folder so that the checkout's gpudl/ (without its kernels) is not found first.
    LINKS=$(mktemp -d)
    mkdir "$LINKS/gpudl" && ln -s "$ROOT"/gpudl/* "$LINKS/gpudl/" && ln -s "$ROOT/kernels" "$LINKS/gpudl/kernels"
    export PYTHONPATH="$LINKS${PYTHONPATH:+:$PYTHONPATH}"
    cd "$LINKS" || exit 2
    note "install      no editable install (see install.log); a link tree stands in: $LINKS"
fi

have_gpu=0
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 && have_gpu=1
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >>"$OUT/nvidia-smi.txt" 2>&1
else
    echo "nvidia-smi not found: no NVIDIA driver on this machine" >"$OUT/nvidia-smi.txt"
fi
note "gpu: $(head -n 1 "$OUT/nvidia-smi.txt" | cut -c1-100)"

"$PY" - >"$OUT/versions.txt" 2>&1 <<'EOF'
import importlib, platform, shutil, sys
print("python", sys.version.replace("\n", " "))
print("platform", platform.platform())
for name in ("numpy", "cupy", "torch", "pytest", "pytest_benchmark", "setuptools"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as exc:
        print(name, "not importable:", type(exc).__name__, exc)
for tool in ("nvcc", "g++"):
    print(tool, shutil.which(tool))
from gpudl.backend import gpu_status
print("gpudl gpu_status", gpu_status())
try:
    import cupy
    print("cuda runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())
    for dev in range(cupy.cuda.runtime.getDeviceCount()):
        props = cupy.cuda.runtime.getDeviceProperties(dev)
        print(f"device {dev}", props["name"].decode(), f"sm_{props['major']}{props['minor']}",
              props["multiProcessorCount"], "SMs", props["totalGlobalMem"] // 2 ** 20, "MiB")
except Exception as exc:
    print("cupy devices: none usable:", type(exc).__name__, exc)
EOF
note "$(grep -E '^cupy [0-9]' "$OUT/versions.txt"); $(grep -E '^gpudl gpu_status ' "$OUT/versions.txt" | cut -c1-120)"

if [ $have_gpu -eq 1 ] && ! grep -q "^gpudl gpu_status (True" "$OUT/versions.txt"; then
    note "FAILED: nvidia-smi sees a GPU but CuPy cannot use it, so the gpu tests would only skip (see versions.txt)"
    failed=1
fi

PYTEST=("$PY" -m pytest -p no:cacheprovider -rfEs)
RUNS=$(mktemp -d)       # the training runs' folders (checkpoints, models): only their figures go into the summary
step tests-gpu "${PYTEST[@]}" -m gpu -v ${GPU_CHECK_PYTEST_ARGS:-} --junitxml="$OUT/tests-gpu.xml" "$ROOT/tests"
note "$("$PY" - "$OUT/tests-gpu.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ElementTree
try:
    root = ElementTree.parse(sys.argv[1]).getroot()
except (OSError, ElementTree.ParseError) as exc:
    sys.exit(f"gpu tests    no junit report ({type(exc).__name__})")
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
count = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
passed = count["tests"] - count["failures"] - count["errors"] - count["skipped"]
print(f"gpu tests    {passed} passed, {count['failures']} failed, {count['errors']} errors, {count['skipped']} "
      f"skipped, of {count['tests']}")
EOF
)"
if [ "${GPU_CHECK_CPU_TESTS:-0}" = 1 ]; then
    step tests-cpu "${PYTEST[@]}" -m "not gpu" -q --junitxml="$OUT/tests-cpu.xml" "$ROOT/tests"
else
    note "tests-cpu    skipped: CI runs them (GPU_CHECK_CPU_TESTS=1 runs them here too)"
fi
# Two LeNet-5 epochs on the default data, the steps replayed as CUDA graphs (--graph auto) and eager (--graph off):
# the second epochs' times side by side (the first also pays for compiling kernels, CuPy's own ones included, which
# its disk cache keeps for whichever run comes next, and for the recordings), and whether the steps were graphed
# (report.json's "step"). Without a GPU they run on the CPU, where --graph auto runs eagerly by design: that checks
# this script, not the graphs.
LENET_DEVICE=cpu
[ $have_gpu -eq 1 ] && LENET_DEVICE=cuda
for mode in auto off; do
    step "lenet5-$mode" "$PY" -m gpudl train lenet5 --device $LENET_DEVICE --epochs 2 --graph "$mode" --quiet \
        --out "$RUNS/lenet5-graph-$mode"
done
lenet_summary=$("$PY" - "$RUNS" "$LENET_DEVICE" "$OUT/lenet5-auto.log" <<'EOF'
import json, sys
runs, device, log = sys.argv[1:4]
seconds, graphed = {}, False
for mode in ("auto", "off"):
    try:
        with open(f"{runs}/lenet5-graph-{mode}/report.json") as handle:
            report = json.load(handle)
        seconds[mode] = report["history"][-1]["seconds"]
        step = report.get("step") or {}
        print(f"lenet5 second epoch --graph {mode} on {device}: {seconds[mode]:.3f} s (first "
              f"{report['history'][0]['seconds']:.3f} s), graphed {step.get('graphed')}, "
              f"replayed_steps {step.get('replayed_steps')}, notice {step.get('notice')!r}")
        if mode == "auto":
            graphed = step.get("graphed") is True and (step.get("replayed_steps") or 0) > 0 and not step.get("notice")
    except (OSError, ValueError, KeyError, IndexError) as exc:
        print(f"lenet5 epoch --graph {mode} on {device}: no report ({type(exc).__name__})")
if len(seconds) == 2 and device == "cuda":
    print(f"lenet5 second epoch: graphed / eager = {seconds['auto'] / seconds['off']:.2f}")
try:
    with open(log) as handle:
        fell_back = [line.strip() for line in handle if "runs eagerly" in line]
except OSError:
    fell_back = []
for line in fell_back[:3]:
    print(f"lenet5 --graph auto said: {line[:200]}")
if device != "cuda":
    print("lenet5 graphed: not checked (no GPU: the CPU runs its steps eagerly by design)")
elif graphed and not fell_back:
    print("lenet5 graphed: YES (replayed CUDA graphs, no fall-back)")
else:
    print("lenet5 graphed: NO")
EOF
)
note "$lenet_summary"
if [ "$LENET_DEVICE" = cuda ] && ! grep -q "^lenet5 graphed: YES" <<<"$lenet_summary"; then
    failed=1
fi
# The benchmark report: every case on the GPU beside PyTorch, the targets met or missed, bench.json and bench.png.
step bench "$PY" -m gpudl bench --device "${GPU_CHECK_BENCH_DEVICE:-cuda}" --out "$OUT/bench" ${GPU_CHECK_BENCH_ARGS---quick}
if [ $failed -eq 0 ]; then note "result: no step failed"; else note "result: FAILURES (see the logs above)"; fi
# A lent GPU machine returns at most 8 files: keep the summary, the test and bench logs and bench.json as they are,
# and pack the rest (install log, versions, nvidia-smi, junit xml, the chart, the training logs) into one archive.
(cd "$OUT" && find . -type f ! -name summary.txt ! -name tests-gpu.log ! -name bench.log ! -name bench.json \
    ! -name details.tar.gz -print0 | tar --null -czf details.tar.gz --remove-files -T - && find . -type d -empty -delete)
exit $failed
