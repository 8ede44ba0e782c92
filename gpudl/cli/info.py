"""`gpudl info`: versions, devices, whether each CUDA source compiles (through CuPy on a GPU, else nvcc), and whether
the CPU kernels are compiled and cached."""
import importlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile

import numpy

from ..backend import gpu_status
from ..functional import dispatch
from ..kernels.loader import KERNEL_DIR, compile_options, read_source
from .common import __version__

EXTRAS_HINT = 'pip install "gpudl[examples]"'


def _version(module_name):
    try:
        module = importlib.import_module(module_name)
    except Exception:       # noqa: BLE001 -- an optional package that fails to import in any way is not usable
        return None
    return getattr(module, "__version__", "installed")


def kernel_sources():
    """{file name: CUDA source} of gpudl's kernels (kernels.loader.read_source: common.cuh spliced in)."""
    return {name: read_source(name) for name in sorted(os.listdir(KERNEL_DIR)) if name.endswith(".cu")}


def _compile(name, code, usable, nvcc):
    """None when `code` compiles for float32 (CuPy on the GPU when usable, else nvcc --ptx), else the compiler's first
    error line."""
    options = compile_options(numpy.float32)
    if usable:
        try:
            import cupy
            cupy.RawModule(code=code, options=("-std=c++17",) + options).compile()
            return None
        except Exception as exc:    # noqa: BLE001 -- the compiler's error, whatever CuPy wraps it in, is the report
            return str(exc).splitlines()[0][:200]
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, name)
        with open(src, "w", encoding="utf-8") as f:
            f.write(code)
        run = subprocess.run([nvcc, "--ptx", "-arch=sm_80", *options, "-o", os.path.join(tmp, "k.ptx"), src],
                             capture_output=True, text=True, check=False)
    if run.returncode == 0:
        return None
    lines = (run.stderr or run.stdout).replace(src, name).strip().splitlines() or ["unknown error"]
    return next((line for line in lines if "error" in line), lines[0])[:200]


def kernel_report(usable, sources=None):
    """One line per CUDA source ({file name: code}; default: gpudl's own): compiled through CuPy on the GPU, else
    through nvcc --ptx, else unchecked."""
    sources = kernel_sources() if sources is None else sources
    if not sources:
        return [f"kernels: no CUDA sources found (looked in {KERNEL_DIR})"]
    nvcc = shutil.which("nvcc")
    if not usable and not nvcc:
        return [f"kernels: {name} not checked (no usable GPU and no nvcc)" for name in sources]
    how = "CuPy, on the GPU" if usable else "nvcc --ptx; no GPU to run it"
    lines = []
    for name, code in sources.items():
        error = _compile(name, code, usable, nvcc)
        lines.append(f"kernels: {name} " + (f"compiles ({how})" if error is None else f"FAILS to compile: {error}"))
    return lines


def cmd_info(args):
    usable, reason = gpu_status()
    print(f"gpudl {__version__}")
    print(f"python {platform.python_version()} ({sys.executable}), numpy {numpy.__version__}")
    cupy_version = _version("cupy")
    print(f"cupy {cupy_version}" if cupy_version else "cupy: not installed (pip install \"gpudl[cuda13]\")")
    extras = [(label, _version(mod)) for label, mod in (("scikit-learn", "sklearn"), ("tqdm", "tqdm"),
                                                          ("matplotlib", "matplotlib"))]
    print("optional: " + ", ".join(f"{label} {v}" if v else f"{label} missing" for label, v in extras)
          + ("" if all(v for _, v in extras) else f" ({EXTRAS_HINT})"))
    print(f"devices: cpu ({os.cpu_count()} cores)")
    if usable:
        import cupy
        for index in range(cupy.cuda.runtime.getDeviceCount()):
            props = cupy.cuda.runtime.getDeviceProperties(index)
            name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            print(f"devices: cuda:{index} {name}, {props['totalGlobalMem'] / 2**30:.1f} GiB")
    else:
        print(f"devices: no usable GPU ({reason})")
    for line in kernel_report(usable):
        print(line)
    cpu = dispatch.cpu_kernels()
    print(cpu.cache_report() if cpu else f"cpu kernels: not available ({dispatch.cpu_kernels_error()}); the NumPy "
          f"reference runs")
    return 0
