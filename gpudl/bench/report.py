"""What a benchmark run reports: the machine and versions, one table, the targets, bench.json and bench.png."""
import json
import os
import platform
import sys
from importlib import metadata

import numpy

from .contention import describe


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(devices):
    """CPU model and core counts, the GPU's name and memory when it was used, and the BLAS numpy calls."""
    info = {"cpu": _cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
            "env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                                               "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}}
    if hasattr(os, "sched_getaffinity"):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["load_average_1min_at_end"] = os.getloadavg()[0]  # other work on the machine skews CPU figures
    try:
        import threadpoolctl
        info["blas"] = [{k: lib.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                        for lib in threadpoolctl.threadpool_info() if lib.get("user_api") == "blas"]
    except (ImportError, OSError, RuntimeError):
        info["blas"] = None
    if "cuda" in devices:
        import cupy
        dev = cupy.cuda.runtime.getDevice()
        props = cupy.cuda.runtime.getDeviceProperties(dev)
        name = props["name"]
        info["gpu"] = {"name": name.decode() if isinstance(name, bytes) else name,
                       "memory_gib": props["totalGlobalMem"] / 2 ** 30,
                       "compute_capability": f"{props['major']}.{props['minor']}"}
    return info


def versions(with_torch):
    """Versions of Python, NumPy, CuPy (and CUDA), PyTorch (and cuDNN) and gpudl."""
    found = {"python": platform.python_version(), "numpy": numpy.__version__, "gpudl": metadata.version("gpudl")}
    cupy = sys.modules.get("cupy")
    if cupy is None:
        try:
            import cupy
        except Exception:   # noqa: BLE001 -- CuPy without a working CUDA fails to import in many ways
            cupy = None
    if cupy is not None:
        found["cupy"] = cupy.__version__
        try:
            found["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        except Exception:   # noqa: BLE001 -- no CUDA runtime: the version stays unknown
            found["cuda_runtime"] = None
    if with_torch:
        import torch
        found["torch"] = torch.__version__
        found["torch_cuda"] = torch.version.cuda
        if torch.backends.cudnn.is_available():
            found["cudnn"] = torch.backends.cudnn.version()
    return found


# ---- lookups over the results -----------------------------------------------------------------------------------

def find(result, device, name, size, impl="gpudl", peer=None):
    """The result entry for one figure, or None."""
    for e in result["results"]:
        if (e["device"], e["name"], e["size"], e["impl"]) == (device, name, size, impl) and \
                (peer is None or e["peer"] == peer):
            return e
    return None


def check_target(target, result):
    """{"target", "device", "status": "met" | "missed" | "not measured", "detail"} for one Target."""
    out = {"target": target.text, "device": target.device}
    mine = find(result, target.device, target.name, target.size)
    if mine is None:
        return dict(out, status="not measured", detail=f"{target.name} [{target.size}] did not run on {target.device}")
    gpu = result["machine"].get("gpu", {}).get("name")
    if target.device == "cuda" and gpu:
        out["device"] = f"cuda ({gpu})"
    if target.measure == "seconds":
        seconds, compiled = mine["ms"]["median"] / 1e3, mine.get("kernels_compiled", 0)
        met = seconds < target.limit and compiled == 0
        detail = f"{seconds:.2f} s, {compiled} kernel file(s) compiled (target < {target.limit:g} s, none compiled)"
        if seconds >= target.limit:
            detail += f": {seconds / target.limit:.2f}x over"
        return dict(out, status="met" if met else "missed", value=seconds, detail=detail)
    if target.measure == "bandwidth":
        fraction = mine.get("copy_fraction")
        if fraction is None:
            return dict(out, status="not measured", detail="no copy bandwidth was measured")
        detail = f"{100 * fraction:.0f}% of copy bandwidth (target >= {100 * target.limit:.0f}%)"
        if fraction < target.limit:
            detail += f": {100 * (target.limit - fraction):.0f} points short"
        return dict(out, status="met" if fraction >= target.limit else "missed", value=fraction, detail=detail)
    peer = find(result, target.device, target.name, target.size, "torch",
                target.peer or next(iter(_peers(result, target)), None))
    if peer is None:
        return dict(out, status="not measured", detail="the PyTorch peer did not run")
    ratio = mine["ms"]["median"] / peer["ms"]["median"]
    if target.limit < 1:
        detail = (f"{1 / ratio:.2f}x faster than {peer['peer']} (target >= {1 / target.limit:.2g}x)")
    else:
        detail = f"{ratio:.2f}x the time of PyTorch {peer['peer']} (target <= {target.limit:g}x)"
    if ratio > target.limit:
        detail += f": missed by {ratio / target.limit:.2f}x"
    return dict(out, status="met" if ratio <= target.limit else "missed", value=ratio, detail=detail)


def _peers(result, target):
    return [e["peer"] for e in result["results"] if e["impl"] == "torch" and e["device"] == target.device
            and e["name"] == target.name and e["size"] == target.size]


# ---- the table --------------------------------------------------------------------------------------------------

def _fmt(value, spec, suffix=""):
    return "-" if value is None else f"{value:{spec}}{suffix}"


def rows(result):
    """Table rows, one per (case, device, PyTorch peer), in the order the cases ran."""
    out = []
    seen = []
    for e in result["results"]:
        key = (e["name"], e["size"], e["device"])
        if e["impl"] == "gpudl" and key not in seen:
            seen.append(key)
    for name, size, device in seen:
        mine = find(result, device, name, size)
        peers = [e for e in result["results"] if e["impl"] == "torch" and
                 (e["name"], e["size"], e["device"]) == (name, size, device)] or [None]
        cpu = find(result, "cpu", name, size) if device == "cuda" else None
        for peer in peers:
            g, t = mine["ms"]["median"], peer["ms"]["median"] if peer else None
            bandwidth = mine.get("gb_per_s")
            if bandwidth is not None and "copy_fraction" in mine:
                bandwidth = f"{bandwidth:.1f} ({100 * mine['copy_fraction']:.0f}%)"
            elif bandwidth is not None:
                bandwidth = f"{bandwidth:.1f}"
            memory = None
            if "peak_bytes" in mine:
                memory = f"{mine['peak_bytes'] / 2 ** 20:.1f} / " + (
                    f"{peer['peak_bytes'] / 2 ** 20:.1f}" if peer and "peak_bytes" in peer else "-")
            if mine["kind"] == "startup":
                name_shown = f"{name} ({mine.get('kernels_compiled', 0)} compiled)"
            else:
                name_shown = name
            out.append([name_shown, size, device, _fmt(g, ".3f"), _fmt(t, ".3f"), peer["peer"] if peer else "-",
                        _fmt(g / t if t else None, ".2f", "x"),
                        _fmt(cpu["ms"]["median"] / g if cpu else None, ".1f", "x"),
                        bandwidth or "-", _fmt(mine.get("tflop_per_s"), ".3g"), memory or "-"])
    return out


HEADER = ["op", "size", "device", "gpudl ms", "PyTorch ms", "peer", "ratio", "GPU speedup", "GB/s (% copy)",
          "TFLOP/s", "peak MiB gpudl / torch"]


def table(result):
    """The whole report as text: the table, the skips, and the targets."""
    body = rows(result)
    widths = [max(len(str(r[i])) for r in [HEADER] + body) for i in range(len(HEADER))]
    right = {3, 4, 6, 7, 8, 9, 10}

    def line(r):
        return "  ".join(str(v).rjust(w) if i in right else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths)))
    lines = [line(HEADER), "  ".join("-" * w for w in widths)] + [line(r) for r in body]
    if "contention" in result:
        lines.append(describe(result["contention"]))
    bw = result["copy_bandwidth_gb_per_s"]
    lines.append("")
    lines.append("medians; ratio = gpudl ms / PyTorch ms (below 1: gpudl is faster); GPU speedup = gpudl CPU ms / "
                 "gpudl GPU ms at the same size; GB/s counts each input and output once"
                 + ("; copy bandwidth " + ", ".join(f"{d} {v:.1f} GB/s" for d, v in bw.items()) if bw else ""))
    skips = {}
    for s in result["skipped"]:
        skips.setdefault((s["device"], s["impl"], s["skipped"]), []).append(f"{s['name']} [{s['size']}]")
    if skips:
        lines.append("")
        lines.append("not run:")
        for (device, impl, reason), which in skips.items():
            which = sorted(set(which))
            more = f" and {len(which) - 4} more" if len(which) > 4 else ""
            lines.append(f"  {device} {impl}: {reason} ({', '.join(which[:4])}{more})")
    if result.get("targets"):
        lines.append("")
        lines.append("targets:")
        for t in result["targets"]:
            lines.append(f"  [{t['status']}] {t['target']} on {t['device']}: {t['detail']}")
    return "\n".join(lines)


# ---- files ------------------------------------------------------------------------------------------------------

def write(result, out_dir):
    """Write bench.json and, when matplotlib is installed, bench.png; return the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "bench.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    written = [path]
    chart_path = chart(result, os.path.join(out_dir, "bench.png"))
    if chart_path:
        written.append(chart_path)
    return written


def chart(result, path):
    """Median times of gpudl and its first PyTorch peer per case and device, log scale; None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    labels, mine, theirs = [], [], []
    for e in result["results"]:
        if e["impl"] != "gpudl" or e["kind"] == "startup":
            continue
        peer = next((p for p in result["results"] if p["impl"] == "torch" and
                     (p["name"], p["size"], p["device"]) == (e["name"], e["size"], e["device"])), None)
        labels.append(f"{e['name']} [{e['size']}] {e['device']}")
        mine.append(e["ms"]["median"])
        theirs.append(peer["ms"]["median"] if peer else numpy.nan)
    if not labels:
        return None
    y = numpy.arange(len(labels))
    fig, ax = plt.subplots(figsize=(11, 1.5 + 0.28 * len(labels)))
    ax.barh(y - 0.2, mine, 0.4, label="gpudl")
    ax.barh(y + 0.2, theirs, 0.4, label="PyTorch")
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median ms per call (log scale)")
    gpu = result["machine"].get("gpu", {}).get("name")
    ax.set_title(f"gpudl vs PyTorch: {result['machine']['cpu']}" + (f" / {gpu}" if gpu else ""), fontsize=9)
    ax.legend()
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
