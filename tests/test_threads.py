"""The CPU thread pool of the NumPy path (gpudl.functional.threads): its setting, and threaded results equal to
single-threaded ones.

Every threaded op splits the batch (or the rows, or the flattened elements) into contiguous chunks and computes each
output element in one chunk. Bit-identical to one thread (numpy.array_equal), forward and backward: im2col, col2im,
conv2d (the per-sample products and dx strips; dW sums the per-sample products over the batch on one thread, in batch
order), pooling, activations, the LSTM step. The row-split matrix products (functional.matmul, dense, matmul_add) are
not: BLAS picks its kernel by the shape it is given (a single row goes to gemv, small blocks to other kernels), so a
chunk's rows may be summed in another order than the whole product's. They are deterministic for a given thread count
and agree with one thread to float32 rounding, and so are whole layers and models that use them.
GRAIN is set to 1 so that even these small arrays are split.
"""
import multiprocessing
import os

import numpy as np
import pytest

import gpudl
from gpudl import functional as F
from gpudl import models, nn, optim
from gpudl.functional import threads
from gpudl.geometry import Window

THREAD_COUNTS = (2, 3)
BATCHES = (1, 2, 5)         # one sample, fewer samples than threads, an odd batch


@pytest.fixture(autouse=True)
def fresh_setting(monkeypatch):
    """Every test starts undecided (the environment is read again) with no pool; the setting and the pool it found
    come back afterwards (monkeypatch), and a pool the test started is shut down."""
    monkeypatch.setattr(threads, "_num_threads", None)
    monkeypatch.setattr(threads, "_pool", None)
    yield
    if threads._pool is not None:
        threads._pool.shutdown(wait=True)


@pytest.fixture
def split_everything(monkeypatch):
    monkeypatch.setattr(threads, "GRAIN", 1)


def with_threads(n, fn, *args):
    threads.set_num_threads(n)
    return fn(*args)


def as_tuple(result):
    return tuple(np.asarray(r) for r in result) if isinstance(result, (tuple, list)) else (result,)


def assert_same_for_every_thread_count(fn, *args, exact=True):
    """fn(*args) (an array or a tuple of them) is the same with 1, 2 and 3 threads: bit-identical when `exact`, else
    within float32 rounding; and bit-identical when run twice with one thread count (deterministic)."""
    single = as_tuple(with_threads(1, fn, *args))
    for n in THREAD_COUNTS:
        first = as_tuple(with_threads(n, fn, *args))
        again = as_tuple(with_threads(n, fn, *args))
        assert len(first) == len(again) == len(single)
        for got, repeat, want in zip(first, again, single):
            assert got.dtype == want.dtype
            assert np.array_equal(got, repeat), f"{n} threads give two results"
            if exact:
                assert np.array_equal(got, want), f"{n} threads differ from one"
            else:
                np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6 * max(1.0, float(np.abs(want).max())))


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


# -- the split ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,chunks", [(10, 3), (2, 3), (1, 1), (0, 2), (7, 7)])
def test_chunk_bounds_cover_the_range_once_in_order(n, chunks):
    bounds = threads.chunk_bounds(n, chunks)
    assert len(bounds) == chunks
    assert [i for start, stop in bounds for i in range(start, stop)] == list(range(n))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 64])
def test_parallel_chunks_runs_every_index_once(split_everything, n_threads, n):
    threads.set_num_threads(n_threads)
    hits = np.zeros(n, dtype=np.int64)
    calls = []

    def work(start, stop):
        calls.append((start, stop))
        hits[start:stop] += 1
    threads.parallel_chunks(n, work)
    assert (hits == 1).all()
    assert len(calls) == max(1, min(n_threads, n))


def test_small_work_stays_on_the_calling_thread():
    threads.set_num_threads(3)
    calls = []
    threads.parallel_chunks(8, lambda start, stop: calls.append((start, stop)), item_size=threads.GRAIN // 8)
    assert calls == [(0, 8)]


def test_an_exception_in_a_chunk_is_raised_after_every_chunk_ran(split_everything):
    threads.set_num_threads(3)
    done = []

    def work(start, stop):
        if start > 0:
            raise RuntimeError(f"chunk {start} failed")
        done.append(start)
    with pytest.raises(RuntimeError, match="chunk .* failed"):
        threads.parallel_chunks(9, work)
    assert done == [0]


@pytest.fixture
def blas_at_two_threads():
    """NumPy's BLAS (threadpoolctl's controller) set to two threads for the test, its setting restored after."""
    libraries = threads._numpy_blas()
    if not libraries:
        pytest.skip("threadpoolctl does not see NumPy's BLAS")
    lib = libraries[0]
    before = lib.get_num_threads()
    lib.set_num_threads(2)
    threads.set_num_threads(2)
    yield lib
    lib.set_num_threads(before)


def test_blas_runs_on_one_thread_inside_a_split_and_is_restored_after(split_everything, blas_at_two_threads):
    lib = blas_at_two_threads
    seen = []
    threads.parallel_chunks(4, lambda start, stop: seen.append(lib.get_num_threads()))
    assert seen == [1, 1]
    assert lib.get_num_threads() == 2
    threads.set_num_threads(1)                      # one thread: BLAS keeps its own setting
    threads.parallel_chunks(4, lambda start, stop: seen.append(lib.get_num_threads()))
    assert seen[-1] == 2


def test_work_too_small_to_split_keeps_the_blas_threads(monkeypatch, blas_at_two_threads):
    # a lone product (an LSTM step's h W_h) is left to BLAS's native threads instead of one Python thread
    lib = blas_at_two_threads
    monkeypatch.setattr(threads, "GRAIN", 100)
    seen = []
    threads.parallel_chunks(4, lambda start, stop: seen.append((start, stop, lib.get_num_threads())), 10)
    assert seen == [(0, 4, 2)]                      # 40 elements: one chunk, BLAS untouched
    threads.parallel_chunks(4, lambda start, stop: seen.append((start, stop, lib.get_num_threads())), 50)
    assert sorted(seen[1:]) == [(0, 2, 1), (2, 4, 1)]
    assert lib.get_num_threads() == 2


def _split_in_child(queue):
    threads.GRAIN = 1
    out = np.zeros(6)

    def work(start, stop):
        out[start:stop] = np.arange(start, stop)
    threads.parallel_chunks(6, work)
    queue.put(out.tolist())


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this platform")
def test_a_forked_child_starts_a_pool_of_its_own(split_everything):
    threads.set_num_threads(2)
    threads.parallel_chunks(4, lambda start, stop: None)     # the parent's pool exists before the fork
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_split_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, "the child hung or failed using the pool"
    assert queue.get(timeout=5) == [0, 1, 2, 3, 4, 5]


def test_bench_threads_sets_the_pool_and_restores_it():
    from gpudl.bench import _thread_limit
    threads.set_num_threads(2)
    with _thread_limit(3, use_torch=False):
        assert gpudl.get_num_threads() == 3
    assert gpudl.get_num_threads() == 2


# -- threaded equals single-threaded --------------------------------------------------------------------------------

def rand(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("stride,pads", [((1, 1), (2, 2, 2, 2)), ((1, 1), (0, 0, 0, 0)), ((2, 2), (1, 0, 1, 0))])
def test_conv2d_forward_and_backward(split_everything, n, stride, pads):
    x, W, b = rand((n, 3, 9, 8)), rand((4, 3, 3, 3), 1), rand(4, 2)
    window = Window.with_pads(x.shape, (3, 3), stride, pads)
    y, saved = F.conv2d(x, W, b, window)
    dy = rand(y.shape, 3)
    assert_same_for_every_thread_count(lambda: (lambda y, saved: (y, saved.unrolled))(*F.conv2d(x, W, b, window)))
    assert_same_for_every_thread_count(lambda: F.conv2d_backward(dy, saved, W))


@pytest.mark.parametrize("n", BATCHES)
def test_im2col_and_col2im(split_everything, n):
    x = rand((n, 2, 7, 6))
    window = Window.with_pads(x.shape, (3, 2), (2, 1), (1, 1, 0, 1))
    col = F.im2col(x, window, fill=-np.inf)
    assert_same_for_every_thread_count(lambda: F.im2col(x, window, fill=-np.inf))
    dcol = rand(col.shape, 1)
    assert_same_for_every_thread_count(lambda: F.col2im(dcol, window))


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


def test_split_activations_match_the_plain_expressions(split_everything):
    threads.set_num_threads(3)
    v, dy = rand((7, 11)) * 30, rand((7, 11), 1)
    z = np.exp(-np.abs(v))
    assert np.array_equal(F.sigmoid(v), np.where(v >= 0, 1 / (1 + z), z / (1 + z)))
    assert np.array_equal(F.relu(v), np.maximum(v, 0))
    assert np.array_equal(F.relu_backward(v, dy), dy * (v > 0))
    assert np.array_equal(F.tanh_backward(v, dy), dy * (1 - v * v))
    assert np.array_equal(F.sigmoid_backward(v, dy, 2.0), dy * (2.0 * v * (1 - v)))


@pytest.mark.parametrize("n", BATCHES)
def test_lstm_step_forward_and_backward(split_everything, n):
    a, c_prev, dh, dc = rand((n, 4 * 6)) * 4, rand((n, 6), 1), rand((n, 6), 2), rand((n, 6), 3)
    _, c = F.lstm_step(a, c_prev)
    assert_same_for_every_thread_count(F.lstm_step, a, c_prev)
    assert_same_for_every_thread_count(lambda: F.lstm_step_backward(dh, dc, a.copy(), c_prev, c))


@pytest.mark.parametrize("n", BATCHES)
def test_softmax_cross_entropy_with_labels(split_everything, n):
    logits, labels = rand((n, 7)) * 10, np.arange(n) % 9 - 1     # -1, 7 and 8 lie outside [0, 7): no class
    assert_same_for_every_thread_count(F.softmax_cross_entropy_labels, logits, labels)
    loss, dz = F.softmax_cross_entropy_labels(logits, labels)
    inside = (labels >= 0) & (labels < 7)
    target = np.zeros_like(logits)
    target[inside, labels[inside]] = 1
    want_loss, want_dz = F.softmax_cross_entropy(logits, target)        # the one-hot form, rows of zeros outside
    assert loss.dtype == dz.dtype == np.float32
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    np.testing.assert_allclose(dz, want_dz, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("n", BATCHES)
def test_matrix_products(split_everything, n):
    x, W, b, dy = rand((n, 9)), rand((9, 4), 1), rand(4, 2), rand((n, 4), 3)
    assert_same_for_every_thread_count(F.matmul, x, W, exact=False)
    assert_same_for_every_thread_count(F.matmul, W.T, x.T, exact=False)
    assert_same_for_every_thread_count(F.dense, x, W, b, exact=False)
    assert_same_for_every_thread_count(F.dense_backward, x, W, dy, exact=False)
    assert_same_for_every_thread_count(lambda: F.matmul_add(x, W, dy.copy()), exact=False)
    np.testing.assert_allclose(F.matmul(x, W), x @ W, rtol=1e-5, atol=1e-6)


def test_float32_stays_float32(split_everything):
    threads.set_num_threads(2)
    x, W, b = rand((3, 2, 6, 6)), rand((3, 2, 3, 3), 1), rand(3, 2)
    y, saved = F.conv2d(x, W, b, Window.with_pads(x.shape, (3, 3), (1, 1), (1, 1, 1, 1)))
    dx, dW, db = F.conv2d_backward(y, saved, W)
    col = saved.unrolled
    h, c = F.lstm_step(rand((3, 8)), rand((3, 2), 1))
    da, dc = F.lstm_step_backward(h, c, rand((3, 8)), c, c)
    for array in (y, col, dx, dW, db, h, c, da, dc, F.relu(x), F.sigmoid(x), F.tanh_backward(x, x),
                  F.dense(rand((3, 4)), rand((4, 2)), rand(2))):
        assert array.dtype == np.float32


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


def test_lenet_training_is_deterministic_for_each_thread_count(split_everything):
    assert_same_for_every_thread_count(train_lenet, exact=False)


def test_lstm_layer_is_deterministic_for_each_thread_count(split_everything):
    x, dy = rand((3, 4, 5)), rand((3, 4, 6), 1)

    def forward_backward():
        nn.init.manual_seed(0)
        layer = nn.LSTM(5, 6)
        y = layer.forward(x)
        dx = layer.backward(dy)
        return (y, dx, *(p.grad for p in layer.parameters()))
    assert_same_for_every_thread_count(forward_backward, exact=False)
