"""pytest-benchmark over gpudl.bench's cases: every case x device x {gpudl, each PyTorch peer}.

    python -m pytest benchmarks/                    # full sizes
    python -m pytest benchmarks/ --bench-quick      # the small sizes CI uses
    python -m pytest benchmarks/ -k lenet --benchmark-group-by=group

GPU figures are skipped where no GPU is usable, PyTorch figures where PyTorch is not installed.
"""
import re

import pytest

from gpudl.bench import all_cases


def pytest_addoption(parser):
    group = parser.getgroup("gpudl bench")
    group.addoption("--bench-quick", action="store_true", help="time the quick (CI) sizes instead of the full ones")
    group.addoption("--bench-device", choices=("cpu", "cuda", "all"), default="all",
                    help="devices to parametrize over (default all; cuda cases skip without a usable GPU)")


def _id(text):
    return re.sub(r"[^A-Za-z0-9_.+>-]+", "_", text).strip("_")


def pytest_generate_tests(metafunc):
    if not {"case", "device", "impl"} <= set(metafunc.fixturenames):
        return
    config = metafunc.config
    wanted = config.getoption("--bench-device")
    params = []
    for case in all_cases(config.getoption("--bench-quick")):
        for device in case.devices:
            if wanted not in ("all", device):
                continue
            marks = [pytest.mark.gpu] if device == "cuda" else []
            for impl in ("gpudl", *case.peers):
                params.append(pytest.param(case, device, impl, marks=marks,
                                           id=_id(f"{case.name} {case.size}-{device}-{impl}")))
    metafunc.parametrize(("case", "device", "impl"), params)
