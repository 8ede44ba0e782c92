"""The lecture's recurrent experiments, each at a small size: gradient norms and the adding problem (the character
LSTM is a model: tests/test_models.py, and `gpudl train charlm` in tests/test_cli.py)."""
import sys

import numpy
import pytest

from gpudl import nn
from gpudl.experiments import gradients, long_term


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


# --- the same experiments on a GPU (skipped without one) ---------------------------------------------------------

@pytest.mark.gpu
def test_experiments_run_on_the_gpu(cupy):
    cpu = gradients.gradient_norms(scales=(0.5, 3.0), steps=10, hidden_size=8, batch_size=4)
    gpu = gradients.gradient_norms(scales=(0.5, 3.0), steps=10, hidden_size=8, batch_size=4, device="cuda")
    for gamma in cpu:
        numpy.testing.assert_allclose(gpu[gamma], cpu[gamma], rtol=1e-9)
    result = long_term.train_adding("lstm", 6, iterations=5, device="cuda")
    assert numpy.isfinite(result["mse"])
