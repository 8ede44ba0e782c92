"""The gpudl command: training each model, predict, info, and one clear line for every kind of bad input."""
import gzip
import json
import os
import subprocess
import sys

import numpy
import pytest

from gpudl import gpu_available
from gpudl.cli import main
from gpudl.readers import read_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fails_with_one_line(argv, capsys, match):
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        status = exc.code
    captured = capsys.readouterr()
    assert status not in (0, None)
    lines = [line for line in captured.err.splitlines() if not line.startswith("gpudl: no usable GPU")]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("gpudl: error: ") and match in lines[0]
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_unknown_model(capsys):
    _fails_with_one_line(["train", "resnet"], capsys, "invalid choice: 'resnet'")


@pytest.mark.parametrize("lr", ["-0.1", "0", "nan", "abc"])
def test_bad_learning_rate(capsys, lr):
    _fails_with_one_line(["train", "xor", f"--lr={lr}"], capsys, "--lr")


def test_missing_data_folder(tmp_path, capsys):
    _fails_with_one_line(["train", "lenet5", "--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path)],
                         capsys, "no such folder")


def test_corrupt_idx_file(tmp_path, capsys):
    data = tmp_path / "mnist"
    data.mkdir()
    (data / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress((2049).to_bytes(4, "big") + bytes(12)))
    (data / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress((2049).to_bytes(4, "big") + bytes(4)))
    line = _fails_with_one_line(["train", "lenet5", "--data-dir", str(data), "--out", str(tmp_path / "run"),
                                 "--device", "cpu"], capsys, "magic number 2049, expected 2051")
    assert "t10k-images-idx3-ubyte.gz" in line


def test_cuda_without_a_gpu(tmp_path, capsys):
    if gpu_available():
        pytest.skip("a GPU is usable here")
    _fails_with_one_line(["train", "xor", "--device", "cuda", "--out", str(tmp_path)], capsys,
                         "device 'cuda' is not usable")


def test_resume_without_checkpoint(tmp_path, capsys):
    _fails_with_one_line(["train", "xor", "--resume", "--out", str(tmp_path)], capsys, "no checkpoint in")


def test_perceptron_learning_rate_above_one(tmp_path, capsys):
    _fails_with_one_line(["train", "perceptron", "--lr", "2", "--out", str(tmp_path)], capsys, "(0, 1]")


def test_options_of_other_models_are_refused_by_name(tmp_path, capsys):
    out = ["--out", str(tmp_path / "run"), "--device", "cpu"]
    _fails_with_one_line(["train", "lenet5", "--hidden", "3"] + out, capsys, "--hidden applies to xor and charlm, "
                         "not to lenet5")
    _fails_with_one_line(["train", "xor", "--seq-len", "3"] + out, capsys, "--seq-len applies to charlm only")
    _fails_with_one_line(["train", "lenet5", "--data", "xor"] + out, capsys, "--data applies to perceptron only")
    assert not os.path.exists(tmp_path / "run")


def test_python_dash_m_reports_one_line_without_traceback(tmp_path):
    run = subprocess.run([sys.executable, "-m", "gpudl", "train", "lenet5", "--data-dir", str(tmp_path / "x")],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("gpudl: error: --data-dir")
    assert "Traceback" not in run.stderr


def test_info_lists_versions_devices_and_kernels(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gpudl 0.1.0\n")
    assert f"numpy {numpy.__version__}" in out
    assert "devices: cpu" in out
    assert ("devices: cuda:0" in out) == gpu_available()
    from gpudl.kernels import KERNEL_DIR
    kernel_lines = [line for line in out.splitlines() if line.startswith("kernels:")]
    sources = sorted(name for name in os.listdir(KERNEL_DIR) if name.endswith(".cu"))
    assert sources and [line.split()[1] for line in kernel_lines] == sources    # one line per CUDA source
    assert not any("FAILS" in line for line in kernel_lines), kernel_lines


def test_train_perceptron_converges_and_predicts(tmp_path, capsys):
    run = str(tmp_path / "p")
    assert main(["train", "perceptron", "--out", run]) == 0
    out = capsys.readouterr().out
    assert "converged after" in out and "training accuracy 1.000" in out
    report = read_json(os.path.join(run, "report.json"))
    assert report["status"] == "completed" and report["converged"] is True and "converged after" in report["reason"]
    assert main(["predict", run]) == 0
    assert "accuracy 1.0000 on 200 samples" in capsys.readouterr().out


def test_train_perceptron_on_xor_says_it_did_not_converge(tmp_path, capsys):
    assert main(["train", "perceptron", "--data", "xor", "--epochs", "20", "--out", str(tmp_path)]) == 0
    assert "did not converge within 20 epoch" in capsys.readouterr().out


def test_train_xor_solves_it_and_predict_reads_the_run(tmp_path, capsys):
    run = str(tmp_path / "xor")
    assert main(["train", "xor", "--device", "cpu", "--quiet", "--out", run]) == 0
    assert "XOR solved by an MLP with one hidden layer of 4" in capsys.readouterr().out
    report = read_json(os.path.join(run, "report.json"))
    assert report["final"]["test_accuracy"] == 1.0 and report["config"]["model_args"]["sizes"] == [2, 4, 1]
    assert report["step"]["graph"] == "auto" and report["step"]["graphed"] is False     # the CPU runs eagerly
    numpy.save(tmp_path / "points.npy", numpy.array([[0, 1], [1, 1]], numpy.float32))
    assert main(["predict", run, "--input", str(tmp_path / "points.npy")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("0: 1 (") and out.splitlines()[1].startswith("1: 0 (")


def test_train_graph_option_passes_through(tmp_path, capsys):
    """--graph on asks for a recorded step, which the CPU cannot give: refused in the flag's words before the run
    folder is made; off runs eagerly."""
    _fails_with_one_line(["train", "xor", "--graph", "on", "--device", "cpu", "--quiet", "--out",
                          str(tmp_path / "on")], capsys, "--graph on: the CPU has no CUDA graph to record; pass "
                         "--graph auto or off")
    assert not (tmp_path / "on").exists()
    assert main(["train", "xor", "--graph", "off", "--epochs", "2", "--device", "cpu", "--quiet",
                 "--out", str(tmp_path / "off")]) == 0
    report = json.loads((tmp_path / "off" / "report.json").read_text())
    assert report["step"] == {"graph": False, "graphed": False, "replayed_steps": 0,
                              "replayed_evaluation_batches": 0, "notice": None}


def test_train_xor_without_hidden_layer_fails(tmp_path, capsys):
    assert main(["train", "xor", "--hidden", "0", "--device", "cpu", "--quiet", "--out", str(tmp_path)]) == 0
    assert "XOR not solved by an MLP with no hidden layer" in capsys.readouterr().out


def test_train_lenet5_one_epoch_then_resume_and_predict(tmp_path, capsys):
    run = str(tmp_path / "lenet")
    assert main(["train", "lenet5", "--epochs", "1", "--device", "cpu", "--quiet", "--out", run]) == 0
    assert "lenet5: test accuracy" in capsys.readouterr().out
    assert main(["train", "lenet5", "--epochs", "2", "--device", "cpu", "--quiet", "--out", run, "--resume"]) == 0
    report = read_json(os.path.join(run, "report.json"))
    assert [r["epoch"] for r in report["history"]] == [1, 2] and report["final"]["test_accuracy"] > 0.8
    capsys.readouterr()
    assert main(["predict", run, "--show", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("0: ") and ", label " in out[1] and out[-1].startswith("accuracy ")
    images = numpy.zeros((2, 28, 28), numpy.uint8)
    numpy.save(tmp_path / "images.npy", images)
    assert main(["predict", run, "--input", str(tmp_path / "images.npy")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_predict_needs_a_finished_run(tmp_path, capsys):
    _fails_with_one_line(["predict", str(tmp_path)], capsys, "report.json is missing")
    _fails_with_one_line(["predict", str(tmp_path / "nothere")], capsys, "nothere: no such folder")


@pytest.mark.slow
def test_acceptance_lenet5_defaults_reach_97_percent_on_the_digits(tmp_path, capsys):
    run = str(tmp_path / "lenet")
    assert main(["train", "lenet5", "--device", "cpu", "--quiet", "--out", run]) == 0
    report = read_json(os.path.join(run, "report.json"))
    assert report["final"]["test_accuracy"] >= 0.97


@pytest.mark.slow
def test_acceptance_lenet5_on_mnist(tmp_path, capsys, mnist_dir):
    """First 8,000 images of the t10k split to train, the last 2,000 to test: at least 97%."""
    run = str(tmp_path / "mnist")
    assert main(["train", "lenet5", "--data-dir", mnist_dir, "--epochs", "4", "--lr", "2e-3", "--device", "cpu",
                 "--quiet", "--out", run]) == 0
    err = capsys.readouterr().err
    assert "first 8000 images to train, last 2000 to test" in err
    report = read_json(os.path.join(run, "report.json"))
    assert report["final"]["test_accuracy"] >= 0.97


def test_a_killed_run_resumed_from_the_command_line_ends_like_an_uninterrupted_one(tmp_path, capsys, monkeypatch):
    from gpudl import optim
    from gpudl.serialization import load_arrays
    common = ["train", "xor", "--epochs", "30", "--device", "cpu", "--quiet", "--seed", "3"]
    assert main(common + ["--out", str(tmp_path / "whole")]) == 0
    real_step, steps = optim.SGD.step, []

    def killed_at_epoch_20(self):          # xor takes one step (4 points, batch 4) per epoch
        steps.append(1)
        if len(steps) == 20:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(optim.SGD, "step", killed_at_epoch_20)
    assert main(common + ["--out", str(tmp_path / "killed")]) == 130
    assert "--resume" in capsys.readouterr().err
    assert int(load_arrays(tmp_path / "killed" / "checkpoint.npz")["epoch"]) == 18  # checkpoints every 3 epochs
    monkeypatch.setattr(optim.SGD, "step", real_step)
    assert main(common + ["--out", str(tmp_path / "killed"), "--resume"]) == 0
    whole, resumed = load_arrays(tmp_path / "whole" / "model.npz"), load_arrays(tmp_path / "killed" / "model.npz")
    assert whole.keys() == resumed.keys()
    for key in whole:
        numpy.testing.assert_array_equal(whole[key], resumed[key])


def test_lenet5_trains_on_the_gpu(tmp_path, capsys, cupy):
    run = str(tmp_path / "gpu")
    assert main(["train", "lenet5", "--epochs", "2", "--device", "cuda", "--quiet", "--out", run]) == 0
    report = read_json(os.path.join(run, "report.json"))
    assert report["config"]["device"].startswith("cuda") and report["final"]["test_accuracy"] > 0.85
    assert main(["predict", run, "--device", "cuda", "--show", "1"]) == 0
    assert main(["train", "lenet5", "--epochs", "3", "--device", "cuda", "--quiet", "--out", run, "--resume"]) == 0


def test_kernel_report_tells_a_good_source_from_a_broken_one():
    import shutil

    from gpudl import cli
    if not gpu_available() and shutil.which("nvcc") is None:
        pytest.skip("neither a GPU nor nvcc to compile with")
    good = ('extern "C" __global__ void twice(float* x, long long n) {\n'
            '    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;\n'
            '    if (i < n) x[i] *= 2.0f;\n}\n')
    broken = 'extern "C" __global__ void k(float* x) { x[0] = not_declared; }\n'
    broken, good = cli.kernel_report(gpu_available(), {"broken.cu": broken, "good.cu": good})
    assert broken.startswith("kernels: broken.cu FAILS to compile") and "not_declared" in broken
    assert good.startswith("kernels: good.cu compiles")


BLOCK_EXTRAS = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('sklearn', 'tqdm', 'matplotlib'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
from gpudl.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_cli_runs_without_the_optional_packages(tmp_path):
    def gpudl(*argv):
        return subprocess.run([sys.executable, "-c", BLOCK_EXTRAS, *argv], capture_output=True, text=True, cwd=ROOT,
                              check=False)

    run = gpudl("train", "xor", "--device", "cpu", "--epochs", "20", "--out", str(tmp_path / "xor"))
    assert run.returncode == 0, run.stderr
    assert "epoch 20/20: loss " in run.stderr  # plain progress lines instead of tqdm
    assert (tmp_path / "xor" / "report.json").exists() and not (tmp_path / "xor" / "curves.png").exists()
    run = gpudl("train", "lenet5", "--device", "cpu", "--out", str(tmp_path / "lenet"))
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        ('gpudl: error: the default digits data set needs scikit-learn: pip install "gpudl[examples]" '
         '(or pass --data-dir with MNIST IDX files)')]
    info = gpudl("info")
    assert info.returncode == 0 and "scikit-learn missing" in info.stdout and "gpudl[examples]" in info.stdout


def test_bench_delegates_to_its_module(monkeypatch):
    import types
    seen = {}
    bench = types.ModuleType("gpudl.bench")
    bench.main = lambda argv: seen.setdefault("bench", argv) and 0
    monkeypatch.setitem(sys.modules, "gpudl.bench", bench)
    assert main(["bench", "--quick", "-k", "conv"]) == 0
    assert seen["bench"] == ["--quick", "-k", "conv"]


def test_every_model_has_one_complete_registry_entry():
    from gpudl.cli import MODELS
    assert list(MODELS) == ["perceptron", "xor", "lenet5", "charlm"]
    for name, entry in MODELS.items():
        assert entry.name == name and callable(entry.train) and callable(entry.build) and callable(entry.predict)


# --- the character-level LSTM language model and the recurrent experiments ----------------------------------------

SENTENCE = "the cat sat on the mat. " * 60
CHARLM_SMALL = ["--seq-len", "10", "--batch-size", "8", "--hidden", "16", "--lr", "0.02", "--device", "cpu",
                "--sample-length", "30"]


def test_train_charlm_on_a_file_reports_perplexity_samples_resumes_and_predicts(tmp_path, capsys):
    text = tmp_path / "small.txt"
    text.write_text(SENTENCE, encoding="utf-8")
    whole, cut = str(tmp_path / "whole"), str(tmp_path / "cut")
    assert main(["train", "charlm", "--text", str(text), "--epochs", "2", "--out", whole] + CHARLM_SMALL) == 0
    captured = capsys.readouterr()
    assert "epoch 2/2" in captured.err and "perplexity" in captured.err
    out = captured.out.splitlines()
    assert out[0].startswith("charlm: perplexity ") and "after epoch 2" in out[0] and whole in out[0]
    assert out[1] == "sample at temperature 0.7:" and len(out[2]) == 30 and set(out[2]) <= set(SENTENCE)
    for name in ("model.npz", "checkpoint.npz", "report.json"):
        assert os.path.exists(os.path.join(whole, name))
    report = read_json(os.path.join(whole, "report.json"))
    assert report["status"] == "completed" and report["config"]["model"] == "charlm"
    history = report["history"]
    assert [r["epoch"] for r in history] == [1, 2] and history[1]["perplexity"] < history[0]["perplexity"]
    for r in history:
        assert r["perplexity"] == pytest.approx(numpy.exp(r["train_loss"]))
        assert r["test_perplexity"] == pytest.approx(numpy.exp(r["test_loss"]))

    # killed after epoch 1, resumed to 2: the same weights and the same sample as the uninterrupted run
    assert main(["train", "charlm", "--text", str(text), "--epochs", "1", "--quiet", "--out", cut] + CHARLM_SMALL) == 0
    capsys.readouterr()
    assert main(["train", "charlm", "--text", str(text), "--epochs", "2", "--quiet", "--resume", "--out", cut]
                + CHARLM_SMALL) == 0
    assert capsys.readouterr().out.splitlines()[2] == out[2]
    from gpudl.serialization import load_arrays
    a, b = load_arrays(os.path.join(whole, "model.npz")), load_arrays(os.path.join(cut, "model.npz"))
    assert a.keys() == b.keys()
    for key in a:
        numpy.testing.assert_array_equal(a[key], b[key])

    assert main(["predict", whole, "--start", "the ", "--length", "12", "--temperature", "0.5", "--seed", "1"]) == 0
    sampled = capsys.readouterr().out.rstrip("\n")
    assert sampled.startswith("the ") and len(sampled) == 16
    _fails_with_one_line(["predict", whole, "--start", "xyz"], capsys, "never saw the characters 'xyz'")


def test_train_charlm_bad_text_files(tmp_path, capsys):
    out = ["--out", str(tmp_path / "run"), "--device", "cpu"]
    _fails_with_one_line(["train", "charlm", "--text", str(tmp_path / "nope.txt")] + out, capsys,
                         "no such text file")
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    _fails_with_one_line(["train", "charlm", "--text", str(empty)] + out, capsys, "empty.txt: holds no text")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café au lait".encode("latin-1"))
    _fails_with_one_line(["train", "charlm", "--text", str(latin)] + out, capsys, "is not UTF-8")
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("abc", encoding="utf-8")
    _fails_with_one_line(["train", "charlm", "--text", str(tiny)] + out, capsys, "too few")
    _fails_with_one_line(["train", "charlm", "--resume"] + out, capsys, "no checkpoint in")
    _fails_with_one_line(["train", "charlm", "--data-dir", str(tmp_path)] + out, capsys, "--text FILE")
    _fails_with_one_line(["train", "charlm", "--temperature", "0"] + out, capsys, "--temperature")
    _fails_with_one_line(["train", "xor", "--text", str(tiny)] + out, capsys, "--text applies to charlm only")
    assert not os.path.exists(tmp_path / "run" / "checkpoint.npz")


def _charlm_run(tmp_path, name, *options):
    """`gpudl train charlm` on SENTENCE; returns (run folder, its report.json)."""
    text = tmp_path / "sentence.txt"
    text.write_text(SENTENCE, encoding="utf-8")
    run = str(tmp_path / name)
    assert main(["train", "charlm", "--text", str(text), "--device", "cpu", "--out", run, *options]) == 0
    return run, read_json(os.path.join(run, "report.json"))


def test_train_charlm_learns_samples_saves_and_reloads(tmp_path, capsys):
    from gpudl.data import Vocabulary
    from gpudl.models import load_charlm, sample
    from gpudl.serialization import load_arrays
    run, report = _charlm_run(tmp_path, "run", "--epochs", "6", "--seq-len", "12", "--batch-size", "8", "--hidden",
                              "32", "--lr", "0.02", "--seed", "0", "--sample-length", "40", "--temperature", "0.5")
    captured = capsys.readouterr()
    history = report["history"]
    assert [row["epoch"] for row in history] == list(range(1, 7))
    assert captured.err.count("perplexity") >= 6 and "epoch 6/6" in captured.err
    for row in history:
        assert row["perplexity"] == pytest.approx(numpy.exp(row["train_loss"]))
        assert row["test_perplexity"] == pytest.approx(numpy.exp(row["test_loss"]))
    # 11 distinct characters: chance perplexity 11; a repeated sentence is nearly predictable.
    assert history[0]["perplexity"] > 5 and history[-1]["perplexity"] < 2.0
    assert history[-1]["test_perplexity"] < 2.0 and history[-1]["train_accuracy"] > 0.8
    trained_sample = captured.out.splitlines()[2]
    assert len(trained_sample) == 40 and set(trained_sample) <= set(SENTENCE)
    assert report["config"]["model_args"]["vocabulary"] == Vocabulary.from_text(SENTENCE).chars

    last = load_arrays(os.path.join(run, "checkpoint.npz"))        # the weights training ended with
    for saved in (run, os.path.join(run, "model.npz")):             # the run folder or its model file
        model, vocab = load_charlm(saved)
        assert vocab.chars == report["config"]["model_args"]["vocabulary"]
        for name, p in model.named_parameters():
            numpy.testing.assert_array_equal(p.data, last[f"model/{name}"])
    # At a low temperature the reloaded model continues the sentence it learned.
    text = sample(model, vocab, "the cat ", 20, temperature=0.1, rng=numpy.random.default_rng(1))
    assert text.startswith("the cat sat on the mat")


def test_resumed_charlm_ends_like_an_uninterrupted_run_and_needs_the_same_text(tmp_path, capsys):
    """The carried LSTM state is reset at every epoch, so the checkpoint (weights, Adam) is all a resume needs."""
    small = ["--seq-len", "10", "--batch-size", "4", "--hidden", "8", "--lr", "0.02", "--seed", "3",
             "--sample-length", "30", "--quiet"]
    _, whole = _charlm_run(tmp_path, "whole", "--epochs", "3", *small)
    whole_sample = capsys.readouterr().out.splitlines()[2]
    _charlm_run(tmp_path, "cut", "--epochs", "1", *small)
    _, resumed = _charlm_run(tmp_path, "cut", "--epochs", "3", "--resume", *small)
    assert capsys.readouterr().out.splitlines()[-1] == whole_sample
    assert [r["train_loss"] for r in resumed["history"]] == [r["train_loss"] for r in whole["history"]]
    other = tmp_path / "other.txt"
    other.write_text(SENTENCE + "#", encoding="utf-8")
    before = {name: (tmp_path / "cut" / name).read_bytes() for name in os.listdir(tmp_path / "cut")}
    assert main(["train", "charlm", "--text", str(other), "--epochs", "4", "--resume", "--device", "cpu", "--out",
                 str(tmp_path / "cut")] + small) == 1
    line = capsys.readouterr().err.splitlines()[-1]    # after the line that describes the text
    assert line.startswith("gpudl: error: --resume: ") and "the content of --text changed" in line
    assert "holds a model built with other settings" in line       # another vocabulary: another model
    assert {name: (tmp_path / "cut" / name).read_bytes() for name in os.listdir(tmp_path / "cut")} == before


def test_charlm_defaults_to_the_standard_library_corpus(tmp_path, capsys):
    run = str(tmp_path / "stdlib")
    assert main(["train", "charlm", "--epochs", "1", "--seq-len", "10", "--batch-size", "4", "--hidden", "8",
                 "--max-chars", "3000", "--device", "cpu", "--sample-length", "5", "--quiet", "--out", run]) == 0
    assert "text: standard-library docstrings" in capsys.readouterr().err
    report = read_json(os.path.join(run, "report.json"))
    assert len(report["config"]["model_args"]["vocabulary"]) > 30    # letters, digits, punctuation of real prose
    first = report["history"][0]
    assert numpy.isfinite(first["train_loss"]) and first["perplexity"] == pytest.approx(numpy.exp(first["train_loss"]))


def test_predict_refuses_the_options_of_other_runs(tmp_path, capsys):
    run = str(tmp_path / "xor")
    assert main(["train", "xor", "--device", "cpu", "--quiet", "--epochs", "2", "--out", run]) == 0
    _fails_with_one_line(["predict", run, "--start", "a"], capsys, f"--start applies to charlm runs only; {run} "
                         "holds a xor model")
    charlm_run, _ = _charlm_run(tmp_path, "lm", "--epochs", "1", "--quiet", *CHARLM_SMALL[:-4])
    capsys.readouterr()
    numpy.save(tmp_path / "x.npy", numpy.zeros((1, 2), numpy.float32))
    _fails_with_one_line(["predict", charlm_run, "--input", str(tmp_path / "x.npy")], capsys, "use --start TEXT")


def test_experiment_gradients_prints_its_table(capsys):
    assert main(["experiment", "gradients", "--steps", "5", "--scales", "0.5", "2", "--hidden-size", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "t-k" in lines[0] and "W_h x 0.5" in lines[0] and "W_h x 2" in lines[0]
    assert lines[1].split()[:2] == ["0", "1.000e+00"] and lines[-1].split()[0] == "4"   # lags t-k from 0 to 4


def test_experiment_long_term_prints_its_table(capsys):
    assert main(["experiment", "long-term", "--lengths", "4", "--iterations", "2", "--hidden-size", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "baseline MSE" in lines[0] and len(lines) == 3      # header, rnn row, lstm row
    assert lines[1].split()[:2] == ["4", "rnn"] and lines[2].split()[:2] == ["4", "lstm"]


def test_unknown_experiment(capsys):
    _fails_with_one_line(["experiment", "mnist"], capsys, "invalid choice: 'mnist'")


@pytest.mark.gpu
def test_train_charlm_on_the_gpu_resumes_and_predicts(tmp_path, capsys, cupy):
    text = tmp_path / "small.txt"
    text.write_text(SENTENCE, encoding="utf-8")
    gpu = CHARLM_SMALL[:CHARLM_SMALL.index("--device")] + ["--device", "cuda", "--sample-length", "30"]
    run = str(tmp_path / "gpu")
    assert main(["train", "charlm", "--text", str(text), "--epochs", "1", "--quiet", "--out", run] + gpu) == 0
    assert main(["train", "charlm", "--text", str(text), "--epochs", "3", "--quiet", "--resume", "--out", run]
                + gpu) == 0
    report = read_json(os.path.join(run, "report.json"))
    assert report["config"]["device"].startswith("cuda") and [r["epoch"] for r in report["history"]] == [1, 2, 3]
    assert report["history"][-1]["perplexity"] < report["history"][0]["perplexity"]
    capsys.readouterr()
    assert main(["predict", run, "--device", "cuda", "--start", "the ", "--length", "10", "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("the ")
    from gpudl.models import load_charlm
    on_gpu, vocab = load_charlm(run, device="cuda")
    on_cpu, _ = load_charlm(run, device="cpu")
    assert isinstance(on_gpu.head.W.data, cupy.ndarray)
    idx = vocab.encode("the cat")[None, :]
    numpy.testing.assert_allclose(on_cpu.forward(idx), cupy.asnumpy(on_gpu.forward(idx)), rtol=1e-4, atol=1e-5)
