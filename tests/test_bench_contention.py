"""gpudl bench notices a busy machine: the CPU time other processes used during its run (and time a hypervisor
stole) is measured and said beside the table and in bench.json. No timing decides a test: CPU time is counted."""
import os
import subprocess
import sys
import time

import pytest

from gpudl.bench.contention import Contention, cpu_times, describe
from gpudl.bench.report import table


def _fake(readings, own):
    """A reader of /proc/stat and of this process's CPU seconds that replays `readings` and `own`."""
    readings, own = list(readings), list(own)
    return (lambda: readings.pop(0)), (lambda: own.pop(0))


@pytest.mark.parametrize("after, own_after, busy, detail", [
    ((1000 + 400, 800 + 20, 0), 1.0, True, "other processes used 2.80 of 2 cores"),    # 3.8 s used, 1 s ours
    ((1000 + 200, 800 + 100, 0), 1.0, False, "other processes used 0.00 of 2 cores"),   # ours alone
    ((1000 + 200, 800 + 100, 30), 0.7, True, "15.0% of CPU time was stolen"),
])
def test_contention_counts_other_processes_and_stolen_time(monkeypatch, after, own_after, busy, detail):
    read, own = _fake([(1000, 800, 0), after], [0.0, own_after])
    clock = iter([10.0, 11.0])
    monkeypatch.setattr("gpudl.bench.contention.time.monotonic", lambda: next(clock))
    with Contention(read, own, cores=2, ticks_per_second=100) as watch:
        pass
    assert watch.report["busy"] is busy and detail in watch.report["detail"]
    assert describe(watch.report).startswith("BUSY MACHINE" if busy else "machine idle")


def test_without_proc_stat_it_says_it_did_not_measure():
    with Contention(lambda: None, lambda: 0.0) as watch:
        pass
    assert watch.report["busy"] is None and describe(watch.report) == "machine load: not measured (no /proc/stat)"


@pytest.mark.skipif(cpu_times() is None, reason="no /proc/stat here")
def test_a_process_spinning_beside_the_benchmark_is_noticed():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        with Contention() as watch:
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                time.sleep(0.05)            # this process idles; the spinner takes a core
    finally:
        spinner.kill()
        spinner.wait()
    assert watch.report["other_processes_cores"] >= 0.5 and watch.report["busy"] is True


def test_the_table_and_bench_json_carry_the_contention(tmp_path):
    from gpudl.bench import main
    assert main(["--quick", "--device", "cpu", "--no-torch", "--filter", "dense fwd [", "--out", str(tmp_path)]) == 0
    import json
    result = json.loads((tmp_path / "bench.json").read_text())
    assert set(result["contention"]) >= {"busy", "detail", "other_processes_cores", "stolen_fraction", "cores"}
    lines = table(result).splitlines()
    assert lines[3] == describe(result["contention"])      # header, rule, the one row, then the machine's load
    assert os.path.exists(tmp_path / "bench.json")
