"""keep_freed_memory: a step's freed arrays stay in the process instead of faulting back in on the next step; a setting
of the whole process, so importing gpudl leaves malloc alone unless GPUDL_KEEP_FREED_MEMORY=1 asks, and the `gpudl`
command makes it unless GPUDL_KEEP_FREED_MEMORY=0."""
import os
import platform
import subprocess
import sys

import pytest

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="malloc tuning is for glibc")

# 30 rounds of four 6 MiB arrays written (faulting their pages in) and then freed together, as a step frees its
# activations; prints the page faults after the first round
_ROUNDS = """
import resource, numpy, gpudl
def round_trip():
    arrays = [numpy.empty(3 << 19, dtype=numpy.float32) for _ in range(4)]
    for a in arrays:
        a.fill(1.0)
    del arrays
round_trip()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    round_trip()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(setting, prefix=""):
    env = dict(os.environ)
    env.pop("GPUDL_KEEP_FREED_MEMORY", None)
    if setting is not None:
        env["GPUDL_KEEP_FREED_MEMORY"] = setting
    done = subprocess.run([sys.executable, "-c", prefix + _ROUNDS], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@glibc_only
def test_importing_gpudl_leaves_malloc_alone_unless_asked():
    pages = (24 << 20) // 4096
    assert faults(None) > 3 * pages                    # malloc as glibc has it: the rounds fault their pages back in
    assert faults("0") > 3 * pages
    assert faults("1") < pages // 4                     # asked for: the freed arrays are reused, (almost) no fault


@glibc_only
def test_keep_freed_memory_is_a_call_away_and_the_command_makes_it():
    calls = "from gpudl.functional import keep_freed_memory\nassert keep_freed_memory() and keep_freed_memory()\n"
    assert faults(None, prefix=calls) < (24 << 20) // 4096 // 4
    for setting, tuned in ((None, True), ("0", False), ("1", True)):
        env = dict(os.environ)
        env.pop("GPUDL_KEEP_FREED_MEMORY", None)
        if setting is not None:
            env["GPUDL_KEEP_FREED_MEMORY"] = setting
        code = ("import contextlib, io\nfrom gpudl.cli import main\nfrom gpudl.functional import host_memory\n"
                "with contextlib.redirect_stdout(io.StringIO()):\n    main(['bench', '--list'])\n"
                "print(host_memory._done)")
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert done.stdout.split()[-1] == str(tuned), (setting, done.stderr)


def test_a_bad_setting_is_named():
    env = dict(os.environ, GPUDL_KEEP_FREED_MEMORY="maybe")
    done = subprocess.run([sys.executable, "-c", "import gpudl"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "GPUDL_KEEP_FREED_MEMORY must be 0 or 1, got 'maybe'" in done.stderr
