"""TensorBoard scalars of a run: each epoch's losses, accuracies, learning rate and samples per second in an events
file that TensorBoard reads (`tensorboard --logdir runs`), written through tensorboardX (the `tensorboard` extra).

The events mirror the run's history: a run (fresh or resumed) removes the events files of this run's earlier
sessions in its folder (names ending in .gpudl) and writes the epochs its checkpoint holds again into a new one, so
a resumed run shows every epoch once even when it was stopped after epochs it had not yet checkpointed.
"""
import os

from .report import EVENTS_SUFFIX, is_events_file

EXTRA = 'pip install "gpudl[tensorboard]"'
TAGS = {"train_loss": "loss/train", "test_loss": "loss/test", "train_accuracy": "accuracy/train",
        "test_accuracy": "accuracy/test", "lr": "learning_rate", "samples_per_s": "samples_per_second",
        "perplexity": "perplexity/train", "test_perplexity": "perplexity/test"}


def summary_writer_class():
    """tensorboardX.SummaryWriter, or an ImportError that says how to install it."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ImportError(f"TensorBoard logging needs tensorboardX: {EXTRA}") from None
    return SummaryWriter


class TensorBoard:
    """Writes the scalars of each epoch record into an events file in `logdir` (step = the epoch)."""

    def __init__(self, logdir):
        self.logdir = os.fspath(logdir)
        self._writer_class = summary_writer_class()
        self.writer = None

    def open(self, history=()):
        """Start this session's events file with the epochs of `history` (a resumed run's)."""
        os.makedirs(self.logdir, exist_ok=True)
        for name in os.listdir(self.logdir):
            if is_events_file(name):
                os.remove(os.path.join(self.logdir, name))
        self.writer = self._writer_class(self.logdir, filename_suffix=EVENTS_SUFFIX, flush_secs=10)
        for record in history:
            self.write(record, flush=False)
        self.writer.flush()
        return self

    def write(self, record, flush=True):
        """The scalars of one epoch's record that are numbers (a test loss without held-out data is skipped)."""
        for key, tag in TAGS.items():
            value = record.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(tag, value, global_step=record["epoch"])
        if flush:
            self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
