"""TrainStep: a step recorded once and replayed gives what the same steps give eagerly.

On the CPU the `kernel_path` fixture's host target records the launches of a step onto a tape (kernels.graph.Tape)
and replays it; on a GPU (marked gpu) the same tests capture a real CUDA graph. Each test drives two copies of one
model with the same batches, one through TrainStep(graph="auto") (replayed after the first call per batch shape),
one through TrainStep(graph=False), and compares losses and parameters: float64 to 1e-12, float32 to a few ulp.
"""
import tracemalloc

import numpy
import pytest

from gpudl import models, nn, optim
from gpudl.backend import to_numpy
from gpudl.train import TrainStep, load_checkpoint, save_checkpoint

DTYPES = [numpy.float32, numpy.float64]


def tolerance(path, dtype):
    if dtype == numpy.float64:
        return dict(rtol=1e-12, atol=1e-14)
    ulps = 4 if path.name == "host" else 64         # a GPU may pick other GEMM kernels inside and outside a graph
    return dict(rtol=ulps * numpy.finfo(numpy.float32).eps, atol=1e-7)


# -- the models of the brief, each with a batch maker: (model, loss, optimizer, batch(n, seed) -> (x, y)) ------------

def lenet(dtype, optimizer):
    model = models.LeNet5(dtype=dtype, rng=numpy.random.default_rng(0))

    def batch(n, seed):
        rng = numpy.random.default_rng(seed)
        return rng.standard_normal((n, 1, 28, 28)).astype(dtype), rng.integers(0, 10, n)
    make = {"sgd": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3),
            "adam": lambda ps: optim.Adam(ps, lr=1e-3, weight_decay=1e-3)}[optimizer]
    return model, nn.SoftmaxCrossEntropy(), make, batch


def xor(dtype, optimizer):
    model = models.MLP([2, 3, 1], dtype=dtype, rng=numpy.random.default_rng(1))
    points = numpy.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=dtype)

    def batch(n, seed):
        rows = numpy.random.default_rng(seed).integers(0, 4, n)
        return points[rows], (points[rows].sum(axis=1, keepdims=True) == 1).astype(dtype)
    return model, nn.MSELoss(), lambda ps: optim.SGD(ps, lr=0.5, momentum=0.9), batch


def char_lstm(dtype, optimizer):
    vocab, steps = 7, 5
    model = models.CharLSTM(vocab, 6, dtype=dtype, rng=numpy.random.default_rng(2))

    def batch(n, seed):
        text = numpy.random.default_rng(seed).integers(0, vocab, (n, steps + 1))
        return text[:, :-1], text[:, 1:]
    make = {"sgd": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
            "adam": lambda ps: optim.Adam(ps, lr=1e-2)}[optimizer]
    return model, nn.SequenceCrossEntropy(), make, batch


class SequenceRegressor(nn.Module):
    """RNN(3, 5) -> Dense(5, 1) at every step: sequences (N, T, 3) -> predictions (N*T, 1)."""

    def __init__(self, dtype, rng):
        self.rnn = nn.RNN(3, 5, dtype=dtype, rng=rng)
        self.head = nn.Dense(5, 1, dtype=dtype, rng=rng)

    def forward(self, x):
        hs = self.rnn.forward(x)
        self._hs_shape = hs.shape
        return self._forward_output(self.head.forward(hs.reshape(-1, hs.shape[-1])))

    def backward(self, dy, input_grad=True):
        dh = self.head.backward(self._backward_input(dy))
        return self.rnn.backward(dh.reshape(self._hs_shape), input_grad=input_grad)


def rnn(dtype, optimizer):
    model = SequenceRegressor(dtype, numpy.random.default_rng(3))

    def batch(n, seed):
        x = numpy.random.default_rng(seed).standard_normal((n, 4, 3)).astype(dtype)
        return x, numpy.cumsum(x[..., :1], axis=1).reshape(-1, 1) / 4      # a running sum to learn
    return model, nn.MSELoss(), lambda ps: optim.SGD(ps, lr=0.2, momentum=0.9), batch


CASES = {"lenet5-sgd": (lenet, "sgd"), "lenet5-adam": (lenet, "adam"), "xor-mlp": (xor, "sgd"),
         "char-lstm-adam": (char_lstm, "adam"), "char-lstm-sgd": (char_lstm, "sgd"), "rnn-sgd": (rnn, "sgd")}


class Run:
    """One copy of a case's model on the path's device, its optimizer and a TrainStep over them."""

    def __init__(self, path, case, dtype, graph, clip_norm=None):
        build, which = CASES[case]
        self.path = path
        self.model, self.loss, make_optimizer, self.batch = build(dtype, which)
        path.move(self.model)
        self.optimizer = make_optimizer(self.model.parameters())
        self.step = TrainStep(self.model, self.loss, self.optimizer, graph=graph, clip_norm=clip_norm)

    def __call__(self, n, seed):
        x, y = self.batch(n, seed)
        return float(to_numpy(self.step(self.path.asarray(x), self.path.asarray(y))))

    def parameters(self):
        return [to_numpy(p.data) for p in self.model.parameters()]


def assert_same_runs(path, dtype, recorded, eager, losses_recorded, losses_eager):
    tol = tolerance(path, dtype)
    numpy.testing.assert_allclose(losses_recorded, losses_eager, **tol)
    for got, want in zip(recorded.parameters(), eager.parameters()):
        numpy.testing.assert_allclose(got, want, **tol)


def drive(run, plan):
    """Run a plan of steps: (batch size, seed) pairs, or callables applied to the run between steps."""
    losses = []
    for item in plan:
        if callable(item):
            item(run)
        else:
            losses.append(run(*item))
    return losses


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_replays_equal_eager_steps(kernel_path, case, dtype):
    """N replays of the recorded step equal N eager steps, an lr schedule changing between them included."""
    plan = [(3, 0), (3, 1), (3, 2), lambda r: setattr(r.optimizer, "lr", r.optimizer.lr * 0.5), (3, 3), (3, 4)]
    recorded, eager = Run(kernel_path, case, dtype, "auto"), Run(kernel_path, case, dtype, False)
    got, want = drive(recorded, plan), drive(eager, plan)
    assert recorded.step.replays == 4 and recorded.step.graphed
    assert eager.step.replays == 0 and not eager.step.graphed
    assert_same_runs(kernel_path, dtype, recorded, eager, got, want)
    assert recorded.optimizer.steps == eager.optimizer.steps == 5
    if dtype == numpy.float64:      # the lr change took effect: without it the replays end elsewhere
        steady = Run(kernel_path, case, dtype, "auto")
        drive(steady, [item for item in plan if not callable(item)])
        assert not all(numpy.allclose(a, b, rtol=1e-9) for a, b in zip(steady.parameters(), recorded.parameters()))


@pytest.mark.parametrize("dtype", DTYPES)
def test_replays_with_gradient_clipping_equal_eager_steps(kernel_path, dtype):
    """The char-LSTM as the CLI trains it: Adam with the global gradient norm clipped (small enough to bite)."""
    plan = [(3, 0), (3, 1), (3, 2), (3, 3)]
    recorded = Run(kernel_path, "char-lstm-adam", dtype, "auto", clip_norm=0.05)
    eager = Run(kernel_path, "char-lstm-adam", dtype, False, clip_norm=0.05)
    unclipped = Run(kernel_path, "char-lstm-adam", dtype, False)
    got, want, free = drive(recorded, plan), drive(eager, plan), drive(unclipped, plan)
    assert recorded.step.replays == 3
    assert_same_runs(kernel_path, dtype, recorded, eager, got, want)
    assert not numpy.allclose(recorded.parameters()[0], unclipped.parameters()[0], rtol=1e-3)
    assert got[0] == pytest.approx(free[0])          # the first loss comes before any update


def test_the_kernel_path_of_a_step_follows_the_numpy_path(kernel_path):
    """The eager kernel path (every op one launch or one GEMM) against the NumPy path, LeNet-5 and the char-LSTM."""
    plan = [(3, 0), (3, 1), (3, 2)]
    for case, clip in (("lenet5-adam", None), ("char-lstm-sgd", 0.1), ("xor-mlp", None)):
        kernels = Run(kernel_path, case, numpy.float64, False, clip)
        got = drive(kernels, plan)
        with kernel_path.reference():
            reference = Run(kernel_path, case, numpy.float64, False, clip)
            want = drive(reference, plan)
            numpy.testing.assert_allclose(got, want, rtol=1e-10)
            for a, b in zip(kernels.parameters(), reference.parameters()):
                numpy.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", ["lenet5-adam", "char-lstm-sgd"])
def test_resume_from_a_checkpoint_taken_between_replays(kernel_path, tmp_path, case):
    """A checkpoint saved between replays and loaded back (in place) makes the next replays repeat themselves."""
    dtype = numpy.float64
    run = Run(kernel_path, case, dtype, "auto")
    drive(run, [(3, 0), (3, 1)])
    path = str(tmp_path / "checkpoint.npz")
    save_checkpoint(path, run.model, run.optimizer, epoch=1)
    if hasattr(run.model, "reset_state"):
        run.model.reset_state()
    after = drive(run, [(3, 2), (3, 3)])
    params_after = run.parameters()
    load_checkpoint(path, run.model, run.optimizer)
    if hasattr(run.model, "reset_state"):
        run.model.reset_state()
    again = drive(run, [(3, 2), (3, 3)])
    assert run.step.graphed and run.step.replays == 5
    numpy.testing.assert_allclose(again, after, rtol=1e-12)
    for got, want in zip(run.parameters(), params_after):
        numpy.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    assert run.optimizer.steps == 4


@pytest.mark.parametrize("case", ["lenet5-sgd", "char-lstm-adam"])
def test_a_new_batch_shape_is_recorded_anew(kernel_path, case):
    """A step recorded for batches of 3, then fed batches of 2 (an epoch's short last batch), records again and never
    replays the stale shape; both recordings stay, and the results follow the eager steps."""
    dtype = numpy.float64

    def reset(run):      # a stateful model starts afresh when the batch size changes
        if hasattr(run.model, "reset_state"):
            run.model.reset_state()
    plan = [(3, 0), (3, 1), reset, (2, 2), (2, 3), reset, (3, 4), reset, (2, 5)]
    recorded, eager = Run(kernel_path, case, dtype, "auto"), Run(kernel_path, case, dtype, False)
    seen = []
    for item in plan:
        drive(recorded, [item])
        seen.append(recorded.step.graphed if not callable(item) else None)
    drive(eager, plan)
    assert [s for s in seen if s is not None] == [False, True, False, True, True, True]
    assert len(recorded.step._recorded) == 2
    assert_same_runs(kernel_path, dtype, recorded, eager, [], [])


def test_a_replay_runs_no_python_of_the_model_and_allocates_nothing(kernel_path, monkeypatch):
    """Once recorded, a step is its launches only: the model's forward and backward, the loss and the optimizer are
    not called (so nothing inside a step can read a value back to the host), and replaying allocates no array."""
    run = Run(kernel_path, "lenet5-sgd", numpy.float32, "auto")
    drive(run, [(4, 0), (4, 1)])                   # warm-up and recording, then a first replay
    x, y = (kernel_path.asarray(a) for a in run.batch(4, 2))

    def refuse(*args, **kwargs):
        raise AssertionError("called during a replay")
    for obj, name in ((run.model, "forward"), (run.model, "backward"), (run.loss, "forward"),
                      (run.optimizer, "step"), (run.optimizer, "zero_grad")):
        monkeypatch.setattr(obj, name, refuse)
    step_bytes = sum(p.data.nbytes for p in run.model.parameters())
    if kernel_path.name == "host":
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            for _ in range(3):
                run.step(x, y)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak - before < step_bytes // 8, (peak - before, step_bytes)
    else:
        pool = kernel_path.xp.get_default_memory_pool()
        run.step(x, y)
        used = pool.used_bytes()
        for _ in range(3):
            run.step(x, y)
        assert pool.used_bytes() - used <= 3 * 512      # the returned 0-d losses only (one pool block each)
    assert run.step.graphed


def test_graph_true_on_numpy_is_an_error_that_says_why():
    model = models.MLP([2, 2, 1], dtype=numpy.float64)
    step = TrainStep(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), graph=True)
    with pytest.raises(RuntimeError, match="NumPy path .*no CUDA graph"):
        step(numpy.zeros((4, 2)), numpy.zeros((4, 1)))


def test_graph_auto_on_numpy_runs_eagerly(capsys):
    model = models.MLP([2, 2, 1], dtype=numpy.float64, rng=numpy.random.default_rng(0))
    twin = models.MLP([2, 2, 1], dtype=numpy.float64, rng=numpy.random.default_rng(0))
    step = TrainStep(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), graph="auto")
    plain = TrainStep(twin, nn.MSELoss(), optim.SGD(twin.parameters(), lr=0.1), graph=False)
    x, y = numpy.random.default_rng(1).random((4, 2)), numpy.ones((4, 1))
    for _ in range(3):
        assert float(step(x, y)) == float(plain(x, y))
        assert not step.graphed
    assert step.replays == 0
    numpy.testing.assert_array_equal(model[0].W.data, twin[0].W.data)
    assert capsys.readouterr().err == ""                  # the expected way to run on the CPU: nothing to say


def test_a_failing_recording_falls_back_to_eager_or_raises(kernel_path, monkeypatch, capsys):
    from gpudl.kernels import graph

    def broken(self, step):
        raise RuntimeError("capture refused by the driver")
    monkeypatch.setattr(graph.Tape, "record", broken)
    monkeypatch.setattr(graph.CudaGraph, "record", broken)
    run = Run(kernel_path, "xor-mlp", numpy.float64, "auto")
    eager = Run(kernel_path, "xor-mlp", numpy.float64, False)
    plan = [(4, 0), (4, 1), (4, 2)]
    assert_same_runs(kernel_path, numpy.float64, run, eager, drive(run, plan), drive(eager, plan))
    assert run.step.replays == 0 and not run.step.graphed
    err = capsys.readouterr().err
    assert err.count("capture refused by the driver") == 1
    strict = Run(kernel_path, "xor-mlp", numpy.float64, True)
    with pytest.raises(RuntimeError, match="capture refused"):
        strict(4, 0)


def test_bad_graph_argument_is_refused():
    model = models.MLP([2, 1])
    with pytest.raises(ValueError, match="graph must be"):
        TrainStep(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), graph="yes")


@pytest.mark.parametrize("case", ["lenet5-sgd", "xor-mlp"])
def test_fit_replays_the_recorded_step_and_says_so(kernel_path, tmp_path, case):
    """fit(graph="auto") gives fit(graph=False)'s history and parameters, short last batches, an lr schedule,
    evaluation between epochs and a resume included; its report says the steps were replayed."""
    from gpudl.data import DataLoader
    from gpudl.train import cosine_schedule, fit
    device = "cuda" if kernel_path.name == "cupy" else "cpu"

    def run(graph, out, epochs, resume=False):
        r = Run(kernel_path, case, numpy.float64, graph)
        x, y = r.batch(10, 7)
        loaders = (DataLoader(x, y, 4, seed=1, device=device), DataLoader(x, y, 5, shuffle=False, device=device))
        report = fit(r.model, r.loss, r.optimizer, *loaders, epochs=epochs, out=str(out), resume=resume,
                     schedule=cosine_schedule(r.optimizer.lr, 3), progress=False, graph=graph)
        return report, r

    recorded, r_recorded = run("auto", tmp_path / "a", 3)
    eager, r_eager = run(False, tmp_path / "b", 3)
    # 3 epochs of batches of 4, 4 and 2: one eager warm-up per batch shape, the other 7 steps replayed
    # the evaluation: batches of 5 and 5, one recording, then 5 replays over the 3 epochs
    assert recorded["step"] == {"graph": "auto", "graphed": True, "replayed_steps": 7,
                                "replayed_evaluation_batches": 5, "notice": None}
    assert eager["step"]["graphed"] is False and eager["step"]["replayed_steps"] == 0
    for a, b in zip(recorded["history"], eager["history"]):
        for key in ("train_loss", "test_loss", "train_accuracy", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-12)
    for got, want in zip(r_recorded.parameters(), r_eager.parameters()):
        numpy.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    first, _ = run("auto", tmp_path / "c", 2)
    resumed, r_resumed = run("auto", tmp_path / "c", 3, resume=True)
    assert resumed["history"][-1]["train_loss"] == pytest.approx(recorded["history"][-1]["train_loss"], rel=1e-12)
    for got, want in zip(r_resumed.parameters(), r_recorded.parameters()):
        numpy.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_an_optimizer_that_is_not_gpudls_runs_eagerly(kernel_path, capsys):
    """A DistributedOptimizer's collectives are not recorded: "auto" runs eagerly and says why once."""
    from gpudl import distributed
    run = Run(kernel_path, "xor-mlp", numpy.float64, "auto")
    run.optimizer = distributed.DistributedOptimizer(run.optimizer, distributed.init("local"))
    run.step = TrainStep(run.model, run.loss, run.optimizer, graph="auto")
    drive(run, [(4, 0), (4, 1), (4, 2)])
    assert run.step.replays == 0 and "DistributedOptimizer" in capsys.readouterr().err


def test_a_step_is_recorded_again_when_the_arrays_it_reads_are_replaced(kernel_path):
    """The recording asks the model's and the optimizer's state_arrays(): replacing the parameters (model.to) or a
    recurrent layer's carried state (another batch size) makes the next call record anew, never replay stale
    buffers; and the replays still equal eager steps."""
    recorded, eager = Run(kernel_path, "char-lstm-sgd", numpy.float64, "auto"), \
        Run(kernel_path, "char-lstm-sgd", numpy.float64, False)
    carried = recorded.model.lstm.carried_arrays
    plan = [(3, 0), (3, 1), (3, 2)]
    assert drive(recorded, plan) == pytest.approx(drive(eager, plan), rel=1e-12)
    assert recorded.step.replays == 2 and len(carried()) == 3     # h_T, c_T and the pre-activations' buffer
    model_arrays = recorded.model.state_arrays()
    assert all(any(a is b for b in model_arrays) for a in carried())
    assert all(any(a is b for b in recorded.optimizer.state_arrays()) for a in recorded.optimizer.velocity)
    for run in (recorded, eager):
        run.model.to(dtype=numpy.float64)           # new gradient arrays and carried state
    assert drive(recorded, [(3, 3), (3, 4)]) == pytest.approx(drive(eager, [(3, 3), (3, 4)]), rel=1e-12)
    assert recorded.step.replays == 3               # (3, 3) recorded anew (not replayed), (3, 4) replayed


def test_optimizer_state_arrays_name_every_buffer():
    model = models.MLP([2, 3, 1], dtype=numpy.float64)
    sgd, adam = optim.SGD(model.parameters(), lr=0.1, momentum=0.9), optim.Adam(model.parameters())
    assert sgd.state_arrays() == [] and adam.state_arrays() == []         # nothing made before the first step
    for p in model.parameters():
        p.grad[...] = 1.0
    sgd.step()
    adam.step()
    assert len(sgd.state_arrays()) == 2 + len(model.parameters())          # lr, count, one velocity each
    assert len(adam.state_arrays()) == 2 + 2 * len(model.parameters()) + 1  # lr, count, m and v each, scalars
