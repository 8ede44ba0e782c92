"""Whether the machine was busy while the benchmark ran. Figures timed beside other work are slower than the code
is (a 2-core machine running something else gave figures 200 times the idle ones), so `gpudl bench` measures the CPU
time that other processes used during its run (from /proc/stat, less its own), the time a hypervisor stole, and the
load average, and says beside the table and in bench.json when the machine was busy."""
import os
import time

OTHERS_LIMIT = 0.1      # other processes' use, as a fraction of the cores, above which the machine counts as busy
OTHERS_MIN = 0.2        # ... and at least this many cores' worth
STOLEN_LIMIT = 0.05     # the fraction of CPU time stolen by a hypervisor above which it counts as busy


def cpu_times():
    """(all CPU time, idle and waiting time, stolen time) in clock ticks since boot, from /proc/stat; None where it
    cannot be read (not Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal (guest time is counted in user already)
    ticks = [int(value) for value in fields[1:9]] + [0] * (9 - len(fields))
    return sum(ticks[:8]), ticks[3] + ticks[4], ticks[7]


def _own_cpu_seconds():
    times = os.times()      # this process and the children it waited for (the start-up case's processes)
    return times.user + times.system + times.children_user + times.children_system


class Contention:
    """with Contention() as watch: ... ; watch.report then says how busy the machine was during the block."""

    def __init__(self, read=cpu_times, own=_own_cpu_seconds, cores=None, ticks_per_second=None):
        self.read, self.own = read, own
        self.cores = cores or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
        self.ticks = ticks_per_second or (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)
        self.report = None

    def __enter__(self):
        self.start = (self.read(), self.own(), time.monotonic())
        return self

    def __exit__(self, *exc):
        (before, own_before, t0), after = self.start, self.read()
        wall = max(time.monotonic() - t0, 1e-9)
        report = {"seconds": round(wall, 3), "cores": self.cores,
                  "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
        if before is None or after is None:
            self.report = dict(report, busy=None, detail="not measured (no /proc/stat)")
            return False
        total, idle, stolen = (a - b for a, b in zip(after, before))
        used = max(0, total - idle - stolen) / self.ticks
        others = max(0.0, used - (self.own() - own_before)) / wall
        stolen_fraction = stolen / total if total else 0.0
        busy = others > max(OTHERS_MIN, OTHERS_LIMIT * self.cores) or stolen_fraction > STOLEN_LIMIT
        report.update(other_processes_cores=round(others, 2), stolen_fraction=round(stolen_fraction, 4), busy=busy)
        report["detail"] = (f"other processes used {others:.2f} of {self.cores} cores on average, "
                            f"{100 * stolen_fraction:.1f}% of CPU time was stolen"
                            + (f", load average {report['load_average_1min']:.2f}"
                               if report["load_average_1min"] is not None else ""))
        self.report = report
        return False


def describe(report):
    """The line printed beside the table."""
    if report is None or report.get("busy") is None:
        return "machine load: " + (report or {}).get("detail", "not measured")
    if report["busy"]:
        return (f"BUSY MACHINE during this run: {report['detail']}; the CPU figures are slower than on an idle "
                f"machine (run again when it is idle)")
    return f"machine idle during this run: {report['detail']}"
