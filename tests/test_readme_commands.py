"""The README's own command lines (training from the command line, the character-level language model) run as
written, one after the other in one folder, as a new user would type them: each exits 0 and leaves what it says."""
import json
import os
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOK = ("The cat sat on the mat. The dog lay by the door. Then the rain came, and the cat and the dog watched "
        "it fall from the window. ") * 50


def _readme_commands():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    commands = []
    for title in ("## Train from the command line", "### Character-level language model (LSTM)"):
        section = readme.split(title, 1)[1]
        block = section.split("\n\n", 2)[1]            # the indented block of commands under the title
        commands += [line.split("  #")[0].strip() for line in block.splitlines() if line.strip().startswith("gpudl ")]
    return commands


def _gpudl():
    script = os.path.join(os.path.dirname(sys.executable), "gpudl")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "gpudl"]


def test_the_readme_lists_its_commands():
    commands = _readme_commands()
    assert "gpudl train charlm --text book.txt --epochs 30 --out runs/book --resume" in commands
    assert "gpudl train xor --out runs/xor-linear --resume --epochs 2000" in commands and len(commands) >= 14


def test_readme_trainings_use_distinct_out_folders():
    trains = [shlex.split(c) for c in _readme_commands() if c.startswith("gpudl train") and "--resume" not in c]
    outs = [words[words.index("--out") + 1] if "--out" in words else f"runs/{words[2]}" for words in trains]
    assert len(set(outs)) == len(outs), outs


@pytest.mark.slow
def test_the_readme_commands_run_as_written(tmp_path):
    pytest.importorskip("sklearn")      # lenet5's default data set
    (tmp_path / "book.txt").write_text(BOOK, encoding="utf-8")
    env = dict(os.environ, GPUDL_DEVICE="cpu")     # the README: GPUDL_DEVICE sets every command's device
    ran = []
    for command in _readme_commands():
        words = shlex.split(command)
        if "--data-dir" in words:                   # ~/mnist: a folder of the user's
            continue
        if words[1] == "export":
            pytest.importorskip("onnx")
        if "--tensorboard" in words:
            pytest.importorskip("tensorboardX")
        done = subprocess.run(_gpudl() + words[1:], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600, check=False)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr and "Warning" not in done.stderr, done.stderr
        ran.append((command, done))
    runs = tmp_path / "runs"

    def report(name):
        return json.loads((runs / name / "report.json").read_text())

    linear = report("xor-linear")
    assert linear["config"]["model_args"]["sizes"] == [2, 1] and len(linear["history"]) == 2000
    book = report("book")
    assert book["status"] == "completed" and [r["epoch"] for r in book["history"]] == list(range(1, 31))
    assert book["config"]["hidden"] == 256 and book["config"]["model_args"]["hidden_size"] == 256
    predicted = dict(ran)["gpudl predict runs/book --start \"The \" --temperature 0.5 --length 300"]
    assert predicted.stdout.startswith("The ") and len(predicted.stdout.rstrip("\n")) == 304
    assert (runs / "lenet5" / "model.onnx").exists()
    assert any(name.startswith("events.out.tfevents.") for name in os.listdir(runs / "xor-tb"))
    assert report("lenet5")["final"]["test_accuracy"] > 0.9
