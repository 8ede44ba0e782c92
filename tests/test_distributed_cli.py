"""`gpudl train MODEL --distributed` under `mpiexec -n 2` (launched by the tests themselves, each with a timeout).

The command line trains in float32, so two ranks and one process with the same global batch agree to float32
rounding, not bit for bit: the mean over two shards' mean gradients sums in another order than one batch's mean.
Those last-bit differences grow a little with every step (1.6e-6 at most after 48 Adam steps of LeNet-5), hence a
tolerance of 1e-5 on the parameters and on the losses, far below what a wrong shard, a missed average or a rank
training on its own gives (those differ from the second digit on: a rank that reads other batches than one process
moved LeNet-5's weights by 1e-2). The data are random 28x28 images written as MNIST IDX files, since `--data-dir`
trains without random shifts (on the digits, the shifts are drawn per rank, so they differ from one process's).
charlm's ranks read their own streams of the text (12 streams in all: 6 or 4 per rank), each carrying its streams'
LSTM state; after 66 Adam steps their parameters were 3.4e-6 from one process's at most (on this 2-core machine).
"""
import gzip
import json
import os
import re
import subprocess
import sys
import time

import numpy
import pytest
from test_distributed import _clean_env, _mpiexec, _require_mpi

from gpudl.cli import main

TIMEOUT = 120
GPUDL = [sys.executable, "-m", "gpudl"]


def _mnist_folder(folder, n=480, bad_label=False):
    """t10k IDX files of n random images (4/5 train, 1/5 test for gpudl train lenet5); bad_label: one label 12."""
    rng = numpy.random.default_rng(5)
    images = rng.integers(0, 256, (n, 28, 28), dtype=numpy.uint8)
    labels = rng.integers(0, 10, n, dtype=numpy.uint8)
    if bad_label:
        labels[3] = 12
    os.makedirs(folder, exist_ok=True)
    for stem, magic, array in (("t10k-images-idx3-ubyte", 2051, images), ("t10k-labels-idx1-ubyte", 2049, labels)):
        header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
        with open(os.path.join(folder, stem + ".gz"), "wb") as f:
            f.write(gzip.compress(header + array.tobytes()))
    return str(folder)


def _train(out, model, *options, ranks=None, via_mpi4py=False):
    """gpudl train MODEL --out OUT on `ranks` ranks under mpiexec (--distributed), or as one plain process."""
    command = [*GPUDL, "train", model, "--out", str(out), "--device", "cpu", "--quiet", *options]
    if ranks is not None:
        _require_mpi()
        python = [sys.executable, "-m", "mpi4py", "-m", "gpudl"] if via_mpi4py else GPUDL
        command = [_mpiexec(), "-n", str(ranks), *python, *command[len(GPUDL):], "--distributed"]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=_clean_env(), check=False)


def _parameters(out):
    with numpy.load(os.path.join(out, "model.npz")) as arrays:
        return {k: arrays[k] for k in arrays.files if not k.startswith("__")}


def _report(out):
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f)


def _assert_same_run(got, want, atol):
    """The run in folder `got` ended where the run in `want` did: parameters, and each epoch's losses and
    accuracies (the training loss summed over the ranks is the global batch's)."""
    a, b = _parameters(got), _parameters(want)
    assert a.keys() == b.keys()
    for name in a:
        numpy.testing.assert_allclose(a[name], b[name], rtol=0, atol=atol, err_msg=name)
    for mine, theirs in zip(_report(got)["history"], _report(want)["history"], strict=True):
        for key in ("train_loss", "test_loss"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5), (key, mine["epoch"])
        for key in ("train_accuracy", "test_accuracy"):
            assert mine[key] == pytest.approx(theirs[key], abs=0.01), (key, mine["epoch"])


def test_two_ranks_train_xor_as_one_process_and_rank_zero_alone_writes(tmp_path):
    done = _train(tmp_path / "two", "xor", "--epochs", "40", ranks=2, via_mpi4py=True)
    assert done.returncode == 0, done.stderr
    assert _train(tmp_path / "one", "xor", "--epochs", "40").returncode == 0
    _assert_same_run(tmp_path / "two", tmp_path / "one", atol=1e-5)
    report = _report(tmp_path / "two")
    assert report["status"] == "completed" and report["distributed"] == {"ranks": 2, "backend": "mpi"}
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one"))
    assert done.stdout.count("x1 x2 | target  output") == 1, "rank 1 must print nothing"
    assert len(re.findall(r"rank \d pid \d+", done.stderr)) == 2


def test_distributed_without_mpiexec_is_one_rank_with_a_notice(tmp_path):
    done = _train(tmp_path / "alone", "xor", "--epochs", "20", "--distributed")
    assert done.returncode == 0, done.stderr
    assert "--distributed without mpiexec: running as one rank" in done.stderr
    assert _report(tmp_path / "alone")["distributed"] == {"ranks": 1, "backend": "local"}
    assert _train(tmp_path / "plain", "xor", "--epochs", "20").returncode == 0
    _assert_same_run(tmp_path / "alone", tmp_path / "plain", atol=0)


def test_models_without_data_parallel_training_refuse_distributed(tmp_path, capsys):
    assert main(["train", "perceptron", "--distributed", "--out", str(tmp_path / "p"), "--device", "cpu"]) == 1
    assert "--distributed applies to xor, lenet5, charlm, not to perceptron" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def _rank_pids(stream, deadline):
    """{rank: pid} from rank 0's start-up line on the launcher's stderr."""
    text = ""
    while time.monotonic() < deadline:
        line = stream.readline()
        text += line
        pids = dict(re.findall(r"rank (\d+) pid (\d+)", line))
        if pids:
            return {int(r): int(p) for r, p in pids.items()}
        if not line:
            break
    raise AssertionError(f"no rank/pid line from the ranks:\n{text}")


def test_a_rank_killed_mid_run_ends_both_and_two_ranks_resume_to_the_uninterrupted_run(tmp_path):
    _require_mpi()
    data = _mnist_folder(tmp_path / "data")
    options = ["--data-dir", data, "--epochs", "4", "--batch-size", "32"]
    run = tmp_path / "run"
    command = [_mpiexec(), "-n", "2", *GPUDL, "train", "lenet5", "--out", str(run), "--device", "cpu", "--quiet",
               "--distributed", *options]
    deadline = time.monotonic() + TIMEOUT
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_clean_env())
    try:
        pids = _rank_pids(launcher.stderr, deadline)
        while not (run / "checkpoint.npz").exists() and launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(pids[1], 9)
        stdout, stderr = launcher.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        launcher.kill()
    assert launcher.returncode != 0, "the run should not finish with a rank killed"
    # how the run ends is a race: mpiexec names rank 1's pid, or rank 0's that it killed next, or rank 0 finds its
    # partner gone inside the gradient's allreduce first and aborts with MPI's error
    named = re.search(r"PID (\d+)\b", stdout + stderr)
    aborted = re.search(r"Abort\(\d+\) on node 0 \(rank 0 .*Allreduce", stdout + stderr)
    assert (named and int(named.group(1)) in (pids[0], pids[1])) or aborted, \
        f"neither the launcher names a rank's pid nor rank 0 reports the failed allreduce:\n{stdout}{stderr}"
    assert not (run / "model.npz").exists()

    resumed = _train(run, "lenet5", *options, "--resume", ranks=2)
    assert resumed.returncode == 0, resumed.stderr
    assert _train(tmp_path / "one", "lenet5", *options).returncode == 0
    _assert_same_run(run, tmp_path / "one", atol=1e-5)
    assert _report(run)["distributed"] == {"ranks": 2, "backend": "mpi"}
    predicted = subprocess.run([*GPUDL, "predict", str(run), "--show", "2"], capture_output=True, text=True,
                               timeout=TIMEOUT, env=_clean_env(), check=False)
    assert predicted.returncode == 0 and "accuracy" in predicted.stdout, predicted.stderr


def test_a_rank_that_fails_ends_every_rank_naming_itself(tmp_path):
    _require_mpi()
    good, bad = _mnist_folder(tmp_path / "good"), _mnist_folder(tmp_path / "bad", bad_label=True)
    rank = [*GPUDL, "train", "lenet5", "--out", str(tmp_path / "run"), "--device", "cpu", "--quiet", "--distributed",
            "--epochs", "2", "--data-dir"]
    command = [_mpiexec(), "-n", "1", *rank, good, ":", "-n", "1", *rank, bad]    # rank 1 reads a corrupt copy
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=_clean_env(), check=False)
    assert done.returncode != 0
    assert re.search(r"gpudl: error: rank 1 of 2: .*label 12 is not a digit 0-9; aborting every rank", done.stderr), \
        done.stderr
    assert not (tmp_path / "run" / "model.npz").exists()


def test_a_run_folder_rank_zero_refuses_ends_every_rank_and_is_left_as_it_was(tmp_path):
    assert _train(tmp_path / "run", "xor", "--epochs", "2").returncode == 0
    before = {name: (tmp_path / "run" / name).read_bytes() for name in os.listdir(tmp_path / "run")}
    done = _train(tmp_path / "run", "xor", "--epochs", "2", ranks=2)
    assert done.returncode != 0
    assert "gpudl: error: rank 0 of 2: " in done.stderr and "holds a finished run (xor, completed)" in done.stderr
    assert {name: (tmp_path / "run" / name).read_bytes() for name in os.listdir(tmp_path / "run")} == before


CHARLM = ["--batch-size", "12", "--seq-len", "20", "--hidden", "32"]      # 66 steps in 3 epochs


@pytest.fixture(scope="module")
def charlm_text(tmp_path_factory):
    """A text file of 6000 characters of standard-library docstrings (charlm's default corpus)."""
    from gpudl.data import default_corpus
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text(default_corpus(6000))
    return str(path)


@pytest.fixture(scope="module")
def charlm_one_process(charlm_text, tmp_path_factory):
    """The run every charlm run on several ranks must reproduce: one process, the same global batch of streams."""
    out = tmp_path_factory.mktemp("charlm") / "one"
    done = _train(out, "charlm", "--text", charlm_text, "--epochs", "3", *CHARLM)
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize("ranks", [2, 3])
def test_charlm_on_ranks_trains_as_one_process(tmp_path, charlm_text, charlm_one_process, ranks):
    done = _train(tmp_path / "run", "charlm", "--text", charlm_text, "--epochs", "3", *CHARLM, ranks=ranks)
    assert done.returncode == 0, done.stderr
    _assert_same_run(tmp_path / "run", charlm_one_process, atol=1e-5)
    assert _report(tmp_path / "run")["distributed"] == {"ranks": ranks, "backend": "mpi"}
    assert sorted(os.listdir(tmp_path / "run")) == sorted(os.listdir(charlm_one_process))
    assert done.stdout.count("sample at temperature") == 1, "rank 0 alone prints"


def test_charlm_resumes_on_another_number_of_ranks_to_the_uninterrupted_run(tmp_path, capsys, charlm_text,
                                                                             charlm_one_process):
    run = tmp_path / "run"
    first = _train(run, "charlm", "--text", charlm_text, "--epochs", "2", *CHARLM, ranks=3)
    assert first.returncode == 0, first.stderr
    trained = _report(run)["history"]
    resumed = _train(run, "charlm", "--text", charlm_text, "--epochs", "3", *CHARLM, "--resume", ranks=2)
    assert resumed.returncode == 0, resumed.stderr
    assert _report(run)["history"][:2] == trained, "epochs 1 and 2 come from the checkpoint, not from a new run"
    _assert_same_run(run, charlm_one_process, atol=1e-5)
    assert main(["predict", str(run), "--start", "The ", "--length", "20", "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("The ")


def test_charlm_refuses_fewer_streams_than_ranks(tmp_path, charlm_text):
    done = _train(tmp_path / "run", "charlm", "--text", charlm_text, "--batch-size", "2", ranks=3)
    assert done.returncode != 0
    assert re.search(r"gpudl: error: rank \d of 3: SequenceBatches: batch_size 2 is the global number of streams "
                     r"and must give each of the 3 ranks a stream at least", done.stderr), done.stderr
    assert not (tmp_path / "run" / "model.npz").exists()
