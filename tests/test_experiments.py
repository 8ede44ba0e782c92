"""The lecture's three recurrent experiments, each at a small size: gradient norms, the adding problem, a char LM."""
import io
import json
import sys

import numpy
import pytest

from gpudl import nn
from gpudl.data.text import Vocabulary
from gpudl.experiments import charlm, gradients, long_term


# --- 1. vanishing and exploding gradients ---------------------------------------------------------------------

def test_gradient_norms_vanish_below_one_and_explode_above():
    results = gradients.gradient_norms(scales=(0.5, 1.0, 3.0), steps=30, hidden_size=16, batch_size=8)
    assert list(results) == [0.5, 1.0, 3.0]
    for norms in results.values():
        assert norms.shape == (30,) and norms[0] == pytest.approx(1.0)
    small, large = results[0.5], results[3.0]
    lags = numpy.arange(30)
    # ||J_t|| <= gamma: with gamma = 0.5 the norm is bounded by 0.5^(t-k) and strictly shrinking.
    assert numpy.all(small <= 0.5 ** lags * (1 + 1e-9))
    assert numpy.all(numpy.diff(small) < 0) and small[-1] < 1e-8
    assert large[-1] > 1e3 and large[10] > large[5] > large[1] > 1


def test_backprop_norms_agree_with_the_layers_bptt():
    """The step-by-step walk equals dL_T/dh_k from RNN.backward run from h_k (its state_grad)."""
    rng = numpy.random.default_rng(2)
    layer = nn.RNN(3, 5, dtype=numpy.float64, rng=rng)
    x, u = rng.normal(size=(4, 9, 3)), rng.normal(size=(4, 5))
    norms = gradients.backprop_norms(layer, x, u)
    hs = layer.forward(x)
    for k in (1, 4, 8):                     # dL_9/dh_k, lag 9 - k
        layer.forward(x[:, k:], hs[:, k - 1])
        layer.backward(None, u)
        want = numpy.linalg.norm(layer.state_grad, axis=1).mean()
        assert norms[9 - k] == pytest.approx(want, rel=1e-12)


def test_gradients_command_line_prints_the_table(capsys):
    results = gradients.main(["--steps", "12", "--scales", "0.5", "2"])
    printed = capsys.readouterr().out
    assert "t-k" in printed and "W_h x 0.5" in printed and "W_h x 2" in printed
    assert f"{results[2.0][11]:.3e}" in printed and f"{results[0.5][5]:.3e}" in printed


def test_gradients_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "g.png"
    gradients.main(["--steps", "6", "--scales", "0.5", "2", "--plot", str(png)])
    assert f"plot written to {png}" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_is_skipped_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib now raises ImportError
    results = gradients.gradient_norms(scales=(0.5,), steps=4, hidden_size=4, batch_size=2)
    assert gradients.plot(results, tmp_path / "g.png") is False
    assert not (tmp_path / "g.png").exists()


# --- 2. long-term dependency: the adding problem ----------------------------------------------------------------

def test_adding_batch_marks_one_number_in_each_half():
    x, target = long_term.adding_batch(numpy.random.default_rng(0), 64, 10)
    assert x.shape == (64, 10, 2) and target.shape == (64, 1)
    marks = x[:, :, 1]
    assert numpy.all(marks.sum(axis=1) == 2)
    assert numpy.all(marks[:, :5].sum(axis=1) == 1) and numpy.all(marks[:, 5:].sum(axis=1) == 1)
    numpy.testing.assert_allclose(target[:, 0], (x[:, :, 0] * marks).sum(axis=1))
    mse, within = long_term.baseline()
    assert mse == pytest.approx(1 / 6, abs=0.01) and within == pytest.approx(0.19, abs=0.02)


def test_lstm_learns_a_lag_where_the_rnn_stays_at_baseline():
    """T = 30: the first marked number is 15-30 steps back. Same size (H = 16), same budget, same seed."""
    options = dict(iterations=400, lr=0.03, hidden_size=16, seed=0)
    rnn = long_term.train_adding("rnn", 30, **options)
    lstm = long_term.train_adding("lstm", 30, **options)
    assert lstm["accuracy"] > 0.8 and lstm["mse"] < 0.05 * lstm["baseline_mse"]   # baseline: ~0.19, 0.16
    assert rnn["accuracy"] < rnn["baseline_accuracy"] + 0.08 and rnn["mse"] > 0.8 * rnn["baseline_mse"]


def test_long_term_command_line(capsys):
    results = long_term.main(["--lengths", "4", "6", "--iterations", "3", "--hidden-size", "4"])
    assert [(r["length"], r["cell"]) for r in results] == [(4, "rnn"), (4, "lstm"), (6, "rnn"), (6, "lstm")]
    printed = capsys.readouterr().out
    assert "baseline MSE" in printed and len(printed.strip().splitlines()) == 5


def test_sequence_regressor_rejects_unknown_cells():
    with pytest.raises(ValueError, match="gru"):
        long_term.SequenceRegressor("gru", 2, 4)


# --- 3. character-level language model --------------------------------------------------------------------------

TEXT = "the cat sat on the mat. " * 60


def test_charlstm_backward_matches_central_differences():
    rng = numpy.random.default_rng(4)
    model = charlm.CharLSTM(5, 6, dtype=numpy.float64, rng=rng)
    idx = rng.integers(0, 5, (2, 7))
    w = rng.normal(size=(2, 7, 5))
    params = model.parameters()

    def loss():
        model.reset_state()
        return float((w * model.forward(idx)).sum())

    loss()
    model.zero_grad()
    dx = model.backward(w)
    assert dx.shape == (2, 7, 5)
    direction = [rng.normal(size=p.shape) for p in params]
    analytic = sum(float((p.grad * d).sum()) for p, d in zip(params, direction))
    for p, d in zip(params, direction):
        p.data += 1e-6 * d
    up = loss()
    for p, d in zip(params, direction):
        p.data -= 2e-6 * d
    down = loss()
    assert analytic == pytest.approx((up - down) / 2e-6, rel=1e-6)


def test_charlstm_takes_indices_or_one_hot_and_checks_them():
    model = charlm.CharLSTM(4, 3, dtype=numpy.float64, rng=numpy.random.default_rng(0))
    idx = numpy.array([[0, 3, 1], [2, 2, 0]])
    by_index = model.forward(idx)
    model.reset_state()
    by_one_hot = model.forward(numpy.eye(4)[idx])
    assert by_index.shape == (2, 3, 4)
    numpy.testing.assert_array_equal(by_index, by_one_hot)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        model.forward(numpy.array([[0, 4]]))


def test_train_charlm_learns_samples_saves_and_reloads(tmp_path):
    out = tmp_path / "run"
    stream = io.StringIO()
    result = charlm.train_charlm(text=TEXT, epochs=6, seq_len=12, batch_size=8, hidden_size=32, lr=0.02, seed=0,
                                 device="cpu", out=str(out), sample_length=40, temperature=0.5, stream=stream)
    history = result["history"]
    assert [row["epoch"] for row in history] == list(range(1, 7))
    assert stream.getvalue().count("perplexity") >= 6 and "epoch 6/6" in stream.getvalue()
    for row in history:
        assert row["perplexity"] == pytest.approx(numpy.exp(row["train_loss"]))
        assert row["test_perplexity"] == pytest.approx(numpy.exp(row["test_loss"]))
    # 11 distinct characters: chance perplexity 11; a repeated sentence is nearly predictable.
    assert history[0]["perplexity"] > 5 and history[-1]["perplexity"] < 2.0
    assert history[-1]["test_perplexity"] < 2.0 and history[-1]["train_accuracy"] > 0.8
    assert len(result["sample"]) == 40 and set(result["sample"]) <= set(TEXT)
    on_disk = json.loads((out / "report.json").read_text())
    assert [row["perplexity"] for row in on_disk["history"]] == [row["perplexity"] for row in history]
    assert on_disk["config"]["model_args"]["vocabulary"] == result["vocab"].chars

    for saved in (out, out / "model.npz"):               # the run folder or its model file
        model, vocab = charlm.load_charlm(saved)
        assert vocab.chars == result["vocab"].chars
        idx = vocab.encode("the cat sat")[None, :]
        result["model"].reset_state()
        numpy.testing.assert_array_equal(model.forward(idx), result["model"].forward(idx))
    # At a low temperature the reloaded model continues the sentence it learned.
    text = charlm.sample(model, vocab, "the cat ", 20, temperature=0.1, rng=numpy.random.default_rng(1))
    assert text.startswith("the cat sat on the mat")


def test_resumed_charlm_ends_like_an_uninterrupted_run(tmp_path):
    """The carried LSTM state is reset at every epoch, so the checkpoint (weights, Adam) is all a resume needs."""
    options = dict(text=TEXT, seq_len=10, batch_size=4, hidden_size=8, lr=0.02, seed=3, device="cpu",
                   sample_length=30, progress=False)
    whole = charlm.train_charlm(epochs=3, out=str(tmp_path / "whole"), **options)
    charlm.train_charlm(epochs=1, out=str(tmp_path / "cut"), **options)
    resumed = charlm.train_charlm(epochs=3, out=str(tmp_path / "cut"), resume=True, **options)
    for (name, a), (_, b) in zip(whole["model"].named_parameters(), resumed["model"].named_parameters()):
        numpy.testing.assert_array_equal(a.data, b.data, err_msg=name)
    assert [r["train_loss"] for r in resumed["history"]] == [r["train_loss"] for r in whole["history"]]
    assert resumed["sample"] == whole["sample"]
    with pytest.raises(ValueError, match="other characters"):
        charlm.train_charlm(epochs=4, out=str(tmp_path / "cut"), resume=True, **dict(options, text=TEXT + "#"))


def test_sample_checks_temperature_and_start():
    vocab = Vocabulary("abc")
    model = charlm.CharLSTM(3, 4, rng=numpy.random.default_rng(0))
    with pytest.raises(ValueError, match="temperature"):
        charlm.sample(model, vocab, "a", 5, temperature=0)
    with pytest.raises(ValueError, match="'z'"):
        charlm.sample(model, vocab, "az", 5)
    assert len(charlm.sample(model, vocab, "ab", 7, rng=numpy.random.default_rng(0))) == 9


def test_load_charlm_refuses_other_checkpoints(tmp_path):
    import gpudl
    path = tmp_path / "dense.npz"
    gpudl.save(nn.Dense(2, 3), path)
    with pytest.raises(ValueError, match="not a character-model checkpoint"):
        charlm.load_charlm(path)


def test_charlm_command_line_trains_on_a_file_then_samples_from_it(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "m"
    assert charlm.main(["--text", str(corpus), "--epochs", "1", "--seq-len", "10", "--batch-size", "4",
                        "--hidden-size", "8", "--device", "cpu", "--out", str(out), "--sample-length", "15"]) == 0
    captured = capsys.readouterr()
    assert "epoch 1/1" in captured.err and "loss" in captured.err and "perplexity" in captured.err
    assert f"report in {out}" in captured.out and "sample at temperature" in captured.out
    assert (out / "model.npz").exists() and (out / "checkpoint.npz").exists()
    charlm.main(["--load", str(out), "--device", "cpu", "--start", "the", "--sample-length", "5"])
    sampled = capsys.readouterr().out.strip()
    assert sampled.startswith("the") and len(sampled) == 8


def test_charlm_defaults_to_the_standard_library_corpus():
    result = charlm.train_charlm(epochs=1, seq_len=10, batch_size=4, hidden_size=8, max_chars=3000, device="cpu",
                                 sample_length=5, progress=False)
    assert len(result["vocab"]) > 30                   # letters, digits, punctuation of real prose
    assert numpy.isfinite(result["history"][0]["train_loss"])
    assert result["history"][0]["perplexity"] == pytest.approx(numpy.exp(result["history"][0]["train_loss"]))


# --- the same experiments on a GPU (skipped without one) ---------------------------------------------------------

@pytest.mark.gpu
def test_experiments_run_on_the_gpu(cupy, tmp_path):
    cpu = gradients.gradient_norms(scales=(0.5, 3.0), steps=10, hidden_size=8, batch_size=4)
    gpu = gradients.gradient_norms(scales=(0.5, 3.0), steps=10, hidden_size=8, batch_size=4, device="cuda")
    for gamma in cpu:
        numpy.testing.assert_allclose(gpu[gamma], cpu[gamma], rtol=1e-9)
    result = long_term.train_adding("lstm", 6, iterations=5, device="cuda")
    assert numpy.isfinite(result["mse"])
    out = tmp_path / "lm"
    trained = charlm.train_charlm(text=TEXT, epochs=1, seq_len=8, batch_size=4, hidden_size=8, device="cuda",
                                  out=str(out), sample_length=5, progress=False)
    assert isinstance(trained["model"].head.W.data, cupy.ndarray)
    model, vocab = charlm.load_charlm(out, device="cpu")
    idx = vocab.encode("the cat")[None, :]
    trained["model"].reset_state()
    numpy.testing.assert_allclose(model.forward(idx), cupy.asnumpy(trained["model"].forward(idx)), rtol=1e-4,
                                  atol=1e-5)
