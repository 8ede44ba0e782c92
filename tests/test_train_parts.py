"""The parts of the training loop, each on its own: the read-back window, the divergence watch, progress,
checkpointing's resume rules, the checkpoint's carried state, and the TensorBoard writer."""
import io
import math

import numpy
import pytest

from gpudl import nn
from gpudl.train import Checkpoints, DivergenceWatch, Progress, resume_changes
from gpudl.train.checkpoint import carried_state, restore_carried_state, stateful_layers
from gpudl.train.readback import ReadBack


def test_read_back_returns_the_window_in_batch_order_with_one_copy_each_and_empties_it():
    window = ReadBack()
    for k in range(3):
        window.add(numpy.asarray(k + 0.5), 4, numpy.asarray(k), 4)
    assert len(window) == 3
    assert window.drain() == ([(0.5, 4), (1.5, 4), (2.5, 4)], [(0, 4), (1, 4), (2, 4)])
    assert len(window) == 0 and window.drain() == ([], [])


@pytest.mark.parametrize("value, diverged", [(1.0, False), (-2e29, False), (2e30, True), (math.inf, True),
                                             (math.nan, True), (-math.inf, True)])
def test_the_divergence_watch_flags_non_finite_and_enormous_losses(value, diverged):
    assert DivergenceWatch().diverged(value) is diverged
    assert DivergenceWatch(limit=10.0).diverged(11.0) is True


def test_the_divergence_watch_makes_numpy_errors_raise():
    with pytest.raises(FloatingPointError), DivergenceWatch.numpy_errors():
        numpy.float32(3e38) * numpy.float32(10)
    with pytest.raises(ValueError, match="limit must be positive"):
        DivergenceWatch(limit=0)


def test_progress_shows_every_nth_epoch_and_the_last_as_one_line_off_a_terminal():
    log = io.StringIO()
    progress = Progress(every=3, stream=log)
    for epoch in range(1, 8):
        progress.epoch(epoch, 7, batches=5).close(f"loss {epoch}")
    progress.epoch(1, 7, batches=5, shown=False).close("hidden")
    assert log.getvalue().splitlines() == ["epoch 3/7: loss 3", "epoch 6/7: loss 6", "epoch 7/7: loss 7"]
    with pytest.raises(ValueError, match="every must be a positive int"):
        Progress(every=0)


def test_checkpoints_validate_and_resume_changes_lists_what_changes_the_result():
    with pytest.raises(ValueError, match="every must be a positive int"):
        Checkpoints(every=0)
    old = {"seed": 0, "lr": 0.1, "epochs": 5, "device": "cpu"}
    assert resume_changes(old, {"seed": 0, "lr": 0.1, "epochs": 9, "device": "cuda:0"}, None) == {}
    assert resume_changes(old, {"seed": 1, "lr": 0.1, "epochs": 5}, None) == {"seed": (0, 1)}
    assert resume_changes(old, dict(old, new_key=1), None) == {}       # a key the checkpoint never recorded


def test_the_carried_state_of_stateful_layers_round_trips_through_host_arrays():
    lstm = nn.LSTM(3, 4, stateful=True, rng=numpy.random.default_rng(0))
    model = nn.Sequential(lstm, nn.Dense(4, 2))
    assert stateful_layers(model) == [lstm] and carried_state(model) == {}     # nothing carried yet
    lstm.forward(numpy.ones((2, 5, 3), numpy.float32))
    saved = carried_state(model)
    assert sorted(saved) == ["carried/0.0", "carried/0.1"] and saved["carried/0.0"].shape == (2, 4)
    expected = lstm.forward(numpy.ones((2, 1, 3), numpy.float32)).copy()      # the next step from that state
    lstm.reset_state()
    restore_carried_state(model, saved)
    numpy.testing.assert_array_equal(lstm.forward(numpy.ones((2, 1, 3), numpy.float32)), expected)


def test_the_tensorboard_writer_skips_what_is_not_a_number(tmp_path):
    pytest.importorskip("tensorboardX")
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from gpudl.train import TensorBoard
    board = TensorBoard(tmp_path).open([{"epoch": 1, "train_loss": 2.0, "test_loss": None, "train_accuracy": None}])
    board.write({"epoch": 2, "train_loss": 1.5, "lr": 0.1, "note": "text"})
    board.close()
    events = accumulator.EventAccumulator(str(tmp_path))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["learning_rate", "loss/train"]
    assert [(e.step, e.value) for e in events.Scalars("loss/train")] == [(1, 2.0), (2, 1.5)]
