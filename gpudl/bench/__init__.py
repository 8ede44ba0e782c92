"""`gpudl bench`: time every op and model step on the CPU and the GPU, beside PyTorch doing the same work.

    python -m gpudl.bench --quick             # small sizes (what CI runs)
    python -m gpudl.bench --device all        # full sizes, the CPU and (when usable) the GPU
    python -m gpudl.bench --filter lenet --out results
    python -m gpudl.bench --profile --filter "lenet5 step [b64]" --device cpu    # where the host time goes

It prints one table (gpudl ms, PyTorch ms, their ratio, the GPU-vs-CPU speedup, GB/s against the device's measured
copy bandwidth, TFLOP/s, peak GPU memory of model steps) with a line that says whether other work kept the machine
busy meanwhile (contention.py), checks the project's performance targets, and writes
bench.json (machine, versions, min/median/max of every figure) and, with matplotlib, bench.png to --out.
The pytest-benchmark suite in benchmarks/ times the same cases.
"""
import argparse
import contextlib
import sys

from ..backend import gpu_status
from ..functional.threads import set_num_threads
from . import report
from .cases import all_cases
from .common import Case, Unavailable, torch_module
from .contention import Contention
from .targets import Target, targets
from .timing import (
    Timing,
    copy_bandwidth,
    cupy_sync,
    peak_bytes_cupy,
    peak_bytes_torch,
    release_gpu_memory,
    time_call,
    torch_sync,
)

__all__ = ["Case", "Target", "Timing", "Unavailable", "all_cases", "main", "prepare", "profile", "run", "targets",
           "time_call"]

# timing settings: quick keeps the whole CPU run to seconds; full gives steadier medians
QUICK = {"repeat": 3, "warmup_s": 0.02, "repeat_s": 0.01, "budget_s": 1.0}
FULL = {"repeat": 10, "warmup_s": 0.2, "repeat_s": 0.05, "budget_s": 8.0}


def prepare(case, device, impl="gpudl"):
    """(fn, sync) for one case on "cpu" or "cuda", by gpudl or by the PyTorch peer named `impl`.

    Raises Unavailable, with the reason, when it cannot run here (no usable GPU, no PyTorch, a missing model).
    """
    if device not in case.devices:
        raise Unavailable(f"{case.key} is not run on {device}")
    if device == "cuda":
        usable, reason = gpu_status()
        if not usable:
            raise Unavailable(f"no usable GPU: {reason}")
    if impl == "gpudl":
        return case.build(device), (cupy_sync if device == "cuda" else None)
    if impl not in case.peers:
        raise Unavailable(f"{case.key} has no PyTorch peer {impl!r}")
    torch = torch_module()
    if torch is None:
        raise Unavailable("PyTorch is not installed")
    if device == "cuda" and not torch.cuda.is_available():
        raise Unavailable("this PyTorch build cannot use the GPU")
    return case.peers[impl](device), (torch_sync if device == "cuda" else None)


def _measure(case, device, impl, settings, log, quick=False):
    """One figure as a result dict, or a skip dict with the reason."""
    entry = {"name": case.name, "size": case.size, "kind": case.kind, "device": device,
             "impl": "gpudl" if impl == "gpudl" else "torch", "peer": None if impl == "gpudl" else impl}
    try:
        fn, sync = prepare(case, device, impl)
        if case.kind == "startup":
            timing = _time_startup(fn, 1 if quick else settings["repeat"])
            entry["kernels_compiled"] = fn.compiled
        else:
            timing = time_call(fn, sync, **settings)
        entry.update(ms=timing.as_ms(), repeats=timing.repeats, calls_per_repeat=timing.number)
        if case.bytes:
            entry["bytes"] = case.bytes
            entry["gb_per_s"] = case.bytes / timing.median / 1e9
        if case.flops:
            entry["flops"] = case.flops
            entry["tflop_per_s"] = case.flops / timing.median / 1e12
        if case.kind == "model" and device == "cuda":
            entry["peak_bytes"] = (peak_bytes_cupy if impl == "gpudl" else peak_bytes_torch)(fn)
        log(f"  {case.key:<55} {device:<5} {impl:<14} {timing.median * 1e3:10.3f} ms")
        return entry
    except Unavailable as exc:
        entry["skipped"] = str(exc)
    except Exception as exc:  # noqa: BLE001 -- a broken case must not hide the others; reported, it fails the run
        entry["skipped"] = f"error: {type(exc).__name__}: {exc}"
        entry["error"] = True
        log(f"  {case.key:<55} {device:<5} {impl:<14} ERROR {type(exc).__name__}: {exc}")
    finally:
        fn = None
        release_gpu_memory()
    return entry


def _time_startup(run_process, repeat):
    """The first process fills the kernel cache (it may compile); the `repeat` timed ones (at most 3) must not."""
    run_process()
    run_process.compiled = 0
    seconds = sorted(run_process() for _ in range(max(1, min(repeat, 3))))
    return Timing(seconds[0], seconds[len(seconds) // 2], seconds[-1], len(seconds), 1)


def run(cases, devices, quick=False, repeat=None, use_torch=True, log=None):
    """Time `cases` on each of `devices` by gpudl and, when `use_torch`, by their PyTorch peers.

    Returns the report dict that bench.json holds: settings, machine, versions, how busy the machine was meanwhile
    (contention), copy bandwidths, results (one entry per figure, with min/median/max in ms) and skips (one entry
    per figure that could not run, with the reason).
    """
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    settings = dict(QUICK if quick else FULL)
    if repeat:
        settings["repeat"] = repeat
    with Contention() as watch:
        bandwidth, entries = _time_all(cases, devices, quick, settings, use_torch, log)
    for entry in entries:
        if "gb_per_s" in entry and entry["device"] in bandwidth:
            entry["copy_fraction"] = entry["gb_per_s"] * 1e9 / bandwidth[entry["device"]]
    result = {
        "settings": {"quick": quick, "devices": list(devices), "torch": use_torch, **settings},
        "machine": report.machine_info(devices),
        "versions": report.versions(use_torch),
        "contention": watch.report,
        "copy_bandwidth_gb_per_s": {dev: bw / 1e9 for dev, bw in bandwidth.items()},
        "results": [e for e in entries if "skipped" not in e],
        "skipped": [e for e in entries if "skipped" in e],
    }
    ran = {(e["device"], e["name"]) for e in result["results"]}
    result["targets"] = [report.check_target(t, result) for t in targets(quick)
                         if t.device in devices and (t.device, t.name) in ran]
    return result


def _time_all(cases, devices, quick, settings, use_torch, log):
    """({device: copy bandwidth}, [result or skip entries]) of every case on every device."""
    bandwidth = {}
    if any(c.bytes for c in cases):
        for dev in devices:
            bandwidth[dev] = _copy_bandwidth(dev, quick)
            log(f"copy bandwidth {dev}: {bandwidth[dev] / 1e9:.1f} GB/s (read + write)")
    entries = []
    for case in cases:
        for dev in devices:
            if dev not in case.devices:
                continue
            mine = _measure(case, dev, "gpudl", settings, log, quick)
            entries.append(mine)
            for peer in case.peers if use_torch else ():
                if "skipped" in mine:  # a peer without its gpudl figure compares nothing
                    entries.append(dict(mine, impl="torch", peer=peer, error=False,
                                        skipped="its gpudl side did not run"))
                else:
                    entries.append(_measure(case, dev, peer, settings, log, quick))
    return bandwidth, entries


def _copy_bandwidth(dev, quick):
    nbytes = (64 << 20) if quick else (256 << 20 if dev == "cpu" else 1 << 30)
    if dev == "cpu":
        import numpy
        return copy_bandwidth(numpy, None, nbytes)
    import cupy
    value = copy_bandwidth(cupy, cupy_sync, nbytes)
    release_gpu_memory()
    return value


def profile(case, device, seconds=1.0, top=15, out=None):
    """Print where gpudl's side of a case spends its host time: cProfile over about `seconds` of warm calls,
    by function. On a GPU this is the launch cost; the kernels' own time shows up in the synchronize."""
    import cProfile
    import pstats
    import time
    out = out or sys.stdout
    try:
        fn, sync = prepare(case, device)
    except Unavailable as exc:
        print(f"{case.key} on {device}: not run ({exc})", file=out)
        return
    sync = sync or (lambda: None)
    for _ in range(3):
        fn()
    sync()
    profiler, calls, start = cProfile.Profile(), 0, time.perf_counter()
    profiler.enable()
    while calls < 3 or time.perf_counter() - start < seconds:
        fn()
        sync()
        calls += 1
    profiler.disable()
    print(f"\n== {case.key} on {device}: {calls} calls, {(time.perf_counter() - start) / calls * 1e3:.3f} ms per "
          f"call under the profiler", file=out)
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    release_gpu_memory()


def _parser():
    p = argparse.ArgumentParser(prog="gpudl bench", description="Time gpudl's ops and model steps on the CPU and "
                                "the GPU, side by side with PyTorch.")
    p.add_argument("--quick", action="store_true", help="small sizes (what CI runs)")
    p.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                   help="where to run: cpu, cuda, or all (the CPU and, when usable, the GPU; default)")
    p.add_argument("--out", metavar="DIR", help="write bench.json (and bench.png with matplotlib) here")
    p.add_argument("--filter", metavar="SUBSTR", action="append",
                   help="only cases whose 'name [size]' contains SUBSTR (repeatable: any of them)")
    p.add_argument("--repeat", type=int, metavar="N", help="timed repeats per figure (default 3 quick, 10 full)")
    p.add_argument("--no-torch", action="store_true", help="time gpudl alone, without the PyTorch peer")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for gpudl's CPU kernels (gpudl.set_num_threads; NumPy's BLAS through "
                        "threadpoolctl) and for PyTorch alike")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--profile", action="store_true",
                   help="instead of timing, profile gpudl's side of each selected case (cProfile, by function)")
    return p


def _devices(choice):
    usable, reason = gpu_status()
    if choice == "cpu":
        return ["cpu"]
    if choice == "cuda":
        if not usable:
            raise SystemExit(f"gpudl bench: --device cuda was asked for, but {reason}")
        return ["cuda"]
    if not usable:
        print(f"gpudl bench: no usable GPU ({reason}); timing the CPU only", file=sys.stderr)
        return ["cpu"]
    return ["cpu", "cuda"]


@contextlib.contextmanager
def _thread_limit(threads, use_torch):
    """Run with `threads` CPU threads on both sides: gpudl's pool and NumPy's BLAS, PyTorch's intra-op threads (no
    limit when None)."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise SystemExit("gpudl bench: --threads must be at least 1")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise SystemExit("gpudl bench: --threads needs threadpoolctl (pip install threadpoolctl)") from None
    if use_torch:
        import torch
        torch.set_num_threads(threads)
    previous = set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        set_num_threads(previous)


def main(argv=None):
    """The `gpudl bench` command; returns the exit status (1 when a case failed with an error)."""
    args = _parser().parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        raise SystemExit("gpudl bench: --repeat must be at least 1")
    cases = all_cases(args.quick)
    if args.filter:
        cases = [c for c in cases if any(f.lower() in c.key.lower() for f in args.filter)]
    if args.list:
        for case in cases:
            print(f"{case.key:<60} {case.kind:<8} {','.join(case.devices):<9} peers: {', '.join(case.peers) or '-'}")
        return 0
    if not cases:
        raise SystemExit(f"gpudl bench: no case matches {args.filter}")
    if args.profile:
        with _thread_limit(args.threads, False):
            for dev in _devices(args.device):
                for case in cases:
                    profile(case, dev)
        return 0
    use_torch = not args.no_torch
    if use_torch and torch_module() is None:
        print("gpudl bench: PyTorch is not installed; timing gpudl alone", file=sys.stderr)
        use_torch = False
    with _thread_limit(args.threads, use_torch):
        result = run(cases, _devices(args.device), quick=args.quick, repeat=args.repeat, use_torch=use_torch)
    result["settings"]["threads"] = args.threads
    print(report.table(result))
    if args.out:
        for path in report.write(result, args.out):
            print(f"wrote {path}")
    return 1 if any(s.get("error") for s in result["skipped"]) else 0
