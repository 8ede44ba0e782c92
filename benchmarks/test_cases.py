"""One pytest-benchmark figure per case, device and implementation (gpudl or a PyTorch peer).

The cases, their sizes and the device synchronization come from gpudl.bench, so `gpudl bench` and this suite
time the same work. The timed function synchronizes the device before it returns, so a GPU figure is the time
the work took, not the time it took to queue it.
"""
import pytest

from gpudl.bench import Unavailable, prepare

WARMUP_CALLS = 3


def test_case(benchmark, case, device, impl):
    try:
        fn, sync = prepare(case, device, impl)
    except Unavailable as exc:
        pytest.skip(str(exc))
    benchmark.group = f"{case.key} {device}"
    benchmark.extra_info.update(case=case.name, size=case.size, device=device, impl=impl)
    if case.kind == "startup":
        fn()  # the first process fills the kernel cache; the timed ones must not compile
        fn.compiled = 0
        benchmark.pedantic(fn, rounds=3, iterations=1)
        benchmark.extra_info.update(seconds_to_first_step=fn.seconds, kernels_compiled=fn.compiled)
        return

    def timed():
        fn()
        if sync is not None:
            sync()

    for _ in range(WARMUP_CALLS):  # compile kernels, autotune cuDNN, fill memory pools
        timed()
    benchmark(timed)
    if benchmark.stats is None:  # --benchmark-disable: the call ran once, untimed
        return
    median = benchmark.stats.stats.median
    if case.bytes:
        benchmark.extra_info["gb_per_s"] = case.bytes / median / 1e9
    if case.flops:
        benchmark.extra_info["tflop_per_s"] = case.flops / median / 1e12
