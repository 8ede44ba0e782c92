"""Cold and warm start of the CPU kernels (issue 21): what compiling costs, and what a second process pays instead.

    python benchmarks/cpu_compile.py [--epochs 1] [--runs 2]

Cold: `gpudl train lenet5 --device cpu` in a new process whose kernel cache is empty (GPUDL_CACHE_DIR, a new
folder): the seconds it spent compiling CPU kernels (gpudl.cpu.compile_seconds, the time inside Numba's compiler),
which kernels it compiled for which argument types, and the process's wall time. Warm: the same command on the filled
cache (it must compile nothing), then a new process's first LeNet-5 training step at batch 64: the seconds of that step
(loading the kernels from the cache included) and from the process's start to the end of that step.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

TRAIN = """
import json, sys, time
start = time.time()
from gpudl.cli import main
status = main(["train", "lenet5", "--device", "cpu", "--quiet", "--epochs", sys.argv[1], "--out", sys.argv[2]])
import gpudl.cpu as cpu
compiled = sorted(f"{k.py_func.__module__.rsplit('.', 1)[-1]}.{k.py_func.__name__}{tuple(map(str, sig))}"
                  for k in cpu.loader.kernels for sig in k.stats.cache_misses)
print(json.dumps({"status": status, "compile_seconds": cpu.compile_seconds(), "wall": time.time() - start,
                  "compiled": compiled}))
"""

FIRST_STEP = """
import json, time
import numpy
import gpudl
from gpudl import models, nn, optim, train
model = models.LeNet5()
rng = numpy.random.default_rng(0)
x, y = rng.standard_normal((64, 1, 28, 28)).astype(numpy.float32), rng.integers(0, 10, 64)
step = train.TrainStep(model, nn.SoftmaxCrossEntropy(), optim.Adam(model.parameters()))
begin = time.perf_counter()
float(step(x, y))
seconds = time.perf_counter() - begin
import gpudl.cpu as cpu
print(json.dumps({"first_step": seconds, "end": time.time(), "compile_seconds": cpu.compile_seconds()}))
"""


def run(code, env, *args):
    """A new Python process running `code`; its last stdout line as a dict and the time it was started."""
    started = time.time()
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=1800, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), started, done.stderr


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", default="1")
    parser.add_argument("--runs", type=int, default=2, help="cold starts, each with a new empty cache")
    args = parser.parse_args(argv)
    for number in range(args.runs):
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
            env = dict(os.environ, GPUDL_CACHE_DIR=cache)
            cold, _, notice = run(TRAIN, env, args.epochs, os.path.join(out, "cold"))
            warm, _, _ = run(TRAIN, env, args.epochs, os.path.join(out, "warm"))
            first, started, _ = run(FIRST_STEP, env)
        said = [line for line in notice.splitlines() if "compiling the CPU kernels" in line]
        print(f"run {number + 1}: cold `gpudl train lenet5 --epochs {args.epochs}`: {cold['compile_seconds']:.1f} s "
              f"compiling {len(cold['compiled'])} kernel signatures ({cold['wall']:.1f} s in all); said "
              f"{len(said)} time(s) on stderr")
        print(f"       warm: {warm['compile_seconds']:.2f} s compiling ({warm['wall']:.1f} s in all); a new "
              f"process's first LeNet-5 step (b64) {first['first_step']:.3f} s, {first['end'] - started:.2f} s from "
              f"its start ({first['compile_seconds']:.2f} s compiling)")
        if number == 0:
            print("       compiled: " + "; ".join(cold["compiled"]))


if __name__ == "__main__":
    main()
