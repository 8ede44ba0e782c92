"""The CPU thread setting (gpudl.set_num_threads and the environment) and what it drives: the CPU kernels' threads,
with NumPy's BLAS held to one thread inside them, and results that do not depend on the thread count.

The CPU kernels split their work in fixed pieces (samples, planes, rows, fixed blocks of rows for the products and
fixed blocks of samples for the sums over the batch), so every op gives the same bits with one thread and with two,
forward and backward, and so do whole training steps. loader.GRAIN is set to 1 so that even these small arrays are
shared between threads.
"""
import multiprocessing
import os

import numpy as np
import pytest

import gpudl
from gpudl import functional as F
from gpudl import models, nn, optim
from gpudl.functional import dispatch, threads
from gpudl.geometry import Window

cpu = pytest.importorskip("gpudl.cpu", reason="the CPU kernels need numba")
THREAD_COUNTS = (2, 3)          # 3 is capped at Numba's pool on a 2-core machine, and works as 2 there
BATCHES = (1, 2, 5)             # one sample, fewer samples than threads, an odd batch


@pytest.fixture(autouse=True)
def fresh_setting(monkeypatch):
    """Every test starts undecided (the environment is read again); the setting comes back afterwards."""
    monkeypatch.setattr(threads, "_num_threads", None)
    assert dispatch.cpu_kernels() is cpu


@pytest.fixture
def split_everything(monkeypatch):
    monkeypatch.setattr(cpu.loader, "GRAIN", 1)


def with_threads(n, fn, *args):
    threads.set_num_threads(n)
    return fn(*args)


def as_tuple(result):
    results = result if isinstance(result, (tuple, list)) else (result,)
    return tuple(np.atleast_1d(np.asarray(r)) for r in results)


def assert_same_for_every_thread_count(fn, *args):
    """fn(*args) (an array or a tuple of them) gives the same bits with 1, 2 and 3 threads, twice each."""
    single = as_tuple(with_threads(1, fn, *args))
    for n in THREAD_COUNTS:
        for _ in range(2):
            got = as_tuple(with_threads(n, fn, *args))
            assert len(got) == len(single)
            for a, b in zip(got, single):
                assert a.dtype == b.dtype
                assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), f"{n} threads differ from one"


# -- the setting ----------------------------------------------------------------------------------------------------

def test_set_num_threads_returns_the_previous_setting_and_get_reads_it():
    threads.set_num_threads(3)
    assert gpudl.set_num_threads(2) == 3
    assert gpudl.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "2", None])
def test_set_num_threads_rejects_anything_but_a_positive_int(bad):
    with pytest.raises(ValueError, match="set_num_threads.*positive integer"):
        gpudl.set_num_threads(bad)


def test_set_num_threads_takes_numpy_integers():
    gpudl.set_num_threads(np.int64(2))
    assert gpudl.get_num_threads() == 2


def test_the_environment_variable_sets_the_default(monkeypatch):
    monkeypatch.setenv("GPUDL_NUM_THREADS", " 3 ")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")          # GPUDL_NUM_THREADS wins over the caps
    assert threads.get_num_threads() == 3


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_a_bad_environment_variable_is_a_clear_error(monkeypatch, bad):
    monkeypatch.setenv("GPUDL_NUM_THREADS", bad)
    with pytest.raises(ValueError, match="GPUDL_NUM_THREADS must be a positive integer"):
        threads.get_num_threads()


def test_the_default_is_the_available_cores_capped_by_omp(monkeypatch):
    for name in ("GPUDL_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    assert threads.default_num_threads() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "3,1")        # OMP's nested form: the outer level counts
    assert threads.default_num_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "8")          # a cap, not a raise
    assert threads.default_num_threads() == 4
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert threads.default_num_threads() == 1


def test_available_cores_follows_the_affinity():
    if hasattr(os, "sched_getaffinity"):
        assert threads.available_cores() == len(os.sched_getaffinity(0))
    assert threads.available_cores() >= 1


def test_the_setting_drives_numbas_threads_capped_by_its_pool(split_everything):
    import numba
    for wanted in (1, 2, 64):
        gpudl.set_num_threads(wanted)
        F.relu(np.ones(100, np.float32))
        assert numba.get_num_threads() == min(wanted, numba.config.NUMBA_NUM_THREADS)


def test_small_work_runs_on_one_thread(monkeypatch):
    import numba
    gpudl.set_num_threads(2)
    F.relu(np.ones(cpu.loader.GRAIN - 1, np.float32))
    assert numba.get_num_threads() == 1


def test_numpys_blas_runs_on_one_thread_from_the_first_product_on(monkeypatch):
    blas = cpu.blas.numpy_blas()
    if blas is None or cpu.blas._BLAS_THREADS is None:
        pytest.skip("NumPy's BLAS has no thread control that gpudl knows")
    before = blas.get_num_threads()
    seen = []
    monkeypatch.setattr(cpu.blas._gemm, "run", lambda *args: seen.append(blas.get_num_threads()))
    blas.set_num_threads(2)
    try:
        F.matmul(np.ones((300, 300), np.float32), np.ones((300, 300), np.float32))
        assert seen == [1]
        assert blas.get_num_threads() == 1          # and so it stays: its spinning threads would slow the kernels
        blas.set_num_threads(2)
        F.conv2d(np.ones((2, 1, 8, 8), np.float32), np.ones((1, 1, 3, 3), np.float32), np.zeros(1, np.float32),
                 Window.of((2, 1, 8, 8), 3, 1, "same"))
        assert blas.get_num_threads() == 1
    finally:
        blas.set_num_threads(before)


def test_bench_threads_sets_the_setting_and_restores_it():
    from gpudl.bench import _thread_limit
    threads.set_num_threads(2)
    with _thread_limit(3, use_torch=False):
        assert gpudl.get_num_threads() == 3
    assert gpudl.get_num_threads() == 2


def _convolve(queue):
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    y, _ = F.conv2d(x, np.ones((2, 1, 3, 3), np.float32), np.zeros(2, np.float32),
                    Window.of(x.shape, 3, 1, "same"))
    queue.put((y.sum(dtype=np.float64), dispatch.kernels_for(x) is cpu))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this platform")
def test_a_forked_child_computes_after_its_parent_ran_the_kernels(split_everything, capfd):
    threads.set_num_threads(2)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    _convolve(queue)                        # the parent's threads exist before the fork
    total, on_kernels = queue.get(timeout=5)
    assert on_kernels
    child = context.Process(target=_convolve, args=(queue,))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0, "the child hung or failed"
    child_total, child_on_kernels = queue.get(timeout=5)
    assert np.isclose(child_total, total, rtol=1e-6)
    if cpu.loader.lost_in_fork():           # GNU OpenMP's threads: the child runs the reference, and says so once
        assert not child_on_kernels
        assert capfd.readouterr().err.count("forked from one that ran them on OpenMP threads") == 1


# -- the same bits with any thread count ----------------------------------------------------------------------------

def rand(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("stride,pads", [((1, 1), (2, 2, 2, 2)), ((1, 1), (0, 0, 0, 0)), ((2, 2), (1, 0, 1, 0))])
def test_conv2d_forward_and_backward(split_everything, n, stride, pads):
    x, W, b = rand((n, 3, 9, 8)), rand((4, 3, 3, 3), 1), rand(4, 2)
    window = Window.with_pads(x.shape, (3, 3), stride, pads)
    y, saved = F.conv2d(x, W, b, window)
    dy = rand(y.shape, 3)
    assert_same_for_every_thread_count(lambda: F.conv2d(x, W, b, window)[0])
    assert_same_for_every_thread_count(lambda: F.conv2d_backward(dy, saved, W))
    assert_same_for_every_thread_count(lambda: F.conv2d_backward(dy, saved, W, input_grad=False)[1:])


@pytest.mark.parametrize("n", BATCHES)
def test_im2col_and_col2im(split_everything, n):
    x = rand((n, 2, 7, 6))
    window = Window.with_pads(x.shape, (3, 2), (2, 1), (1, 1, 0, 1))
    col = F.im2col(x, window, fill=-np.inf)
    assert_same_for_every_thread_count(lambda: F.im2col(x, window, fill=-np.inf))
    assert_same_for_every_thread_count(lambda: F.col2im(rand(col.shape, 1), window))


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("window", [(2, 2, 2, 2, (0, 0, 0, 0)), (3, 3, 1, 2, (1, 1, 1, 1))])
def test_pooling_forward_and_backward(split_everything, n, window):
    kh, kw, sh, sw, pads = window
    x = rand((n, 3, 8, 7))
    x[0, 0, :2, :2] = 1.0                                   # a tie: the first maximum must win on every split
    window = Window.with_pads(x.shape, (kh, kw), (sh, sw), pads, pooling=True)
    y, argmax = F.max_pool2d(x, window)
    dy = rand(y.shape, 1)
    assert_same_for_every_thread_count(lambda: F.max_pool2d(x, window))
    assert_same_for_every_thread_count(lambda: F.max_pool2d_backward(dy, argmax, x.shape, window))
    assert_same_for_every_thread_count(lambda: F.avg_pool2d(x, window))
    assert_same_for_every_thread_count(lambda: F.avg_pool2d_backward(dy, x.shape, window))


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("n", BATCHES)
def test_activations_forward_and_backward(split_everything, name, n):
    v, dy = rand((n, 3, 5)) * 30, rand((n, 3, 5), 1)          # large |v|: the sigmoid's both branches
    forward, backward = getattr(F, name), getattr(F, name + "_backward")
    kept = v if name == "relu" else forward(v)
    assert_same_for_every_thread_count(forward, v)
    assert_same_for_every_thread_count(backward, kept, dy)


@pytest.mark.parametrize("n", BATCHES)
def test_lstm_step_forward_and_backward(split_everything, n):
    a, c_prev, dh, dc = rand((n, 4 * 6)) * 4, rand((n, 6), 1), rand((n, 6), 2), rand((n, 6), 3)
    _, c = F.lstm_step(a, c_prev)
    assert_same_for_every_thread_count(F.lstm_step, a, c_prev)
    assert_same_for_every_thread_count(lambda: F.lstm_step_backward(dh, dc, a.copy(), c_prev, c))


@pytest.mark.parametrize("n", BATCHES)
def test_losses(split_everything, n):
    logits, labels = rand((n, 7)) * 10, np.arange(n) % 9 - 1     # -1, 7 and 8 lie outside [0, 7): no class
    assert_same_for_every_thread_count(F.softmax_cross_entropy_labels, logits, labels)
    assert_same_for_every_thread_count(F.mse, logits, rand((n, 7), 1))


@pytest.mark.parametrize("n", (1, 5, 300))
def test_matrix_products_and_bias_gradients(split_everything, n):
    x, W, b, dy = rand((n, 9)), rand((9, 4), 1), rand(4, 2), rand((n, 4), 3)
    assert_same_for_every_thread_count(F.matmul, x, W)
    assert_same_for_every_thread_count(F.matmul, W.T, x.T)
    assert_same_for_every_thread_count(F.dense, x, W, b)
    assert_same_for_every_thread_count(F.dense_backward, x, W, dy)
    assert_same_for_every_thread_count(lambda: F.matmul_add(x, W, dy.copy()))


def test_optimizer_updates(split_everything):
    w, g = rand((40, 30)), rand((40, 30), 1)

    def updated(momentum, weight_decay):
        p = optim.SGD([nn.Parameter(w.copy())], lr=0.1, momentum=momentum, weight_decay=weight_decay)
        q = optim.Adam([nn.Parameter(w.copy())], lr=0.1, weight_decay=weight_decay)
        for opt in (p, q):
            for _ in range(3):
                opt.params[0].grad[...] = g
                opt.step()
        return p.params[0].data, q.params[0].data
    assert_same_for_every_thread_count(updated, 0.9, 0.01)
    assert_same_for_every_thread_count(updated, 0.0, 0.0)


def train_lenet(steps=2, batch=5):
    """LeNet-5's parameters after `steps` training steps from a fixed seed, with the threads set outside."""
    nn.init.manual_seed(0)
    model = models.LeNet5()
    loss, opt = nn.SoftmaxCrossEntropy(), optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        x, labels = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, batch)
        opt.zero_grad()
        loss.forward(model.forward(x), labels)
        model.backward(loss.backward())
        opt.step()
    return [p.data for p in model.parameters()]


def test_lenet_training_gives_the_same_bits_for_every_thread_count(split_everything):
    assert_same_for_every_thread_count(train_lenet)


def test_lstm_layer_gives_the_same_bits_for_every_thread_count(split_everything):
    x, dy = rand((3, 4, 5)), rand((3, 4, 6), 1)

    def forward_backward():
        nn.init.manual_seed(0)
        layer = nn.LSTM(5, 6)
        y = layer.forward(x)
        dx = layer.backward(dy)
        return (y, dx, *(p.grad for p in layer.parameters()))
    assert_same_for_every_thread_count(forward_backward)
