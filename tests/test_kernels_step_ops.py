"""The small kernels of a training step (elementwise.cu, reduce.cu) and the GEMMs (kernels.blas) against the NumPy
path: tier 2 (host build; gpudl's cuBLAS code on the stand-in libcublas of cuda_host) and tier 3 (on a GPU: our own
cuBLAS handle).

Ops are called through gpudl.functional where they have a NumPy path there, so the dispatch is tested too. Launches
are capped at SMALL_GRID blocks of SMALL_BLOCK threads, fewer threads than elements, so the grid-stride loops go round.
"""
import numpy
import pytest
from cuda_host.fixtures import SMALL_BLOCK, SMALL_GRID

from gpudl import functional as F
from gpudl import kernels
from gpudl.backend import to_numpy

pytestmark = pytest.mark.usefixtures("small_launches")
DTYPES = [numpy.float32, numpy.float64]
THREADS = SMALL_BLOCK * SMALL_GRID


def close(path, got, want, dtype, exact_on_host=True):
    """Bit for bit on the host where the arithmetic is the NumPy path's, operation for operation; else a few ulp."""
    got = to_numpy(got)
    if path.name == "host" and exact_on_host:
        numpy.testing.assert_array_equal(got, want)
    else:
        tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == numpy.float32 else {"rtol": 1e-12, "atol": 1e-13}
        numpy.testing.assert_allclose(got, want, **tol)


def sample(shape, dtype, seed=0, scale=3.0):
    return (numpy.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_activations_forward_and_backward(kernel_path, dtype, name):
    v = sample((THREADS + 7, 3), dtype)
    v[0, 0], v[1, 0] = 0, -0.0
    dy = sample(v.shape, dtype, seed=1)
    forward, backward = getattr(F, name), getattr(F, name + "_backward")
    kwargs = {"alpha": 1.5} if name == "sigmoid" else {}
    y = forward(kernel_path.asarray(v), **kwargs)
    kept = v if name == "relu" else to_numpy(y)
    dv = backward(kernel_path.asarray(kept), kernel_path.asarray(dy), **kwargs)
    with kernel_path.reference():
        y_ref = forward(v, **kwargs)
        dv_ref = backward(kept, dy, **kwargs)
    exact = name == "relu"      # exp and tanh: the C library's on the host, CUDA's on a GPU; numpy's own differs
    close(kernel_path, y, y_ref, dtype, exact)
    close(kernel_path, dv, dv_ref, dtype, exact)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_forward_and_backward_into_the_gradients(kernel_path, dtype):
    x, W, b, dy = sample((THREADS + 3, 5), dtype), sample((5, 4), dtype, 1), sample((4,), dtype, 2), \
        sample((THREADS + 3, 4), dtype, 3)
    gW, gb = numpy.ones((5, 4), dtype), numpy.ones(4, dtype)
    move = kernel_path.asarray
    y = F.dense(move(x), move(W), move(b))
    into = (move(gW), move(gb))
    dx, dW, db = F.dense_backward(move(x), move(W), move(dy), into=into)
    assert dW is into[0] and db is into[1]
    with kernel_path.reference():
        y_ref = F.dense(x, W, b)
        dx_ref, dW_ref, db_ref = F.dense_backward(x, W, dy, into=(gW.copy(), gb.copy()))
    for got, want in ((y, y_ref), (dx, dx_ref), (dW, dW_ref), (db, db_ref)):
        close(kernel_path, got, want, dtype, exact_on_host=False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_writes_into_out_and_refuses_one_that_does_not_fit(kernel_path, dtype):
    x, W, b = sample((THREADS + 3, 5), dtype), sample((5, 4), dtype, 1), sample((4,), dtype, 2)
    move = kernel_path.asarray
    out = move(numpy.full((THREADS + 3, 4), numpy.nan, dtype))
    assert F.dense(move(x), move(W), move(b), out=out) is out
    with kernel_path.reference():
        out_ref = numpy.full((THREADS + 3, 4), numpy.nan, dtype)
        assert F.dense(x, W, b, out=out_ref) is out_ref
        numpy.testing.assert_array_equal(out_ref, F.dense(x, W, b))
    close(kernel_path, out, out_ref, dtype, exact_on_host=False)
    other = numpy.float64 if dtype == numpy.float32 else numpy.float32
    for bad, error in ((move(numpy.empty((THREADS + 3, 5), dtype)), ValueError),
                       (move(numpy.empty((4, THREADS + 3), dtype)).T, ValueError),
                       (move(numpy.empty((THREADS + 3, 4), other)), TypeError)):
        with pytest.raises(error, match=r"dense: out\[0\] must be"):
            F.dense(move(x), move(W), move(b), out=bad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("transa, transb", [("N", "N"), ("N", "T"), ("T", "N"), ("T", "T")])
@pytest.mark.parametrize("batch", [None, "both", "a shared", "b shared"])
def test_gemm_every_transpose_and_batch(kernel_path, dtype, transa, transb, batch):
    """out = alpha op(a) op(b) + beta out for row-major arrays: the cuBLAS call's operand swap and leading
    dimensions, 2-D and strided-batched with a shared (stride 0) operand."""
    m, k, n, count = 3, 5, 4, 2
    a = sample((k, m) if transa == "T" else (m, k), dtype, 0)
    b = sample((n, k) if transb == "T" else (k, n), dtype, 1)
    if batch in ("both", "b shared"):
        a = numpy.stack([a, 2 * a])
    if batch in ("both", "a shared"):
        b = numpy.stack([b, -b])
    out0 = sample((count, m, n) if batch else (m, n), dtype, 2)
    out = kernel_path.asarray(out0)
    kernels.gemm(transa, transb, kernel_path.asarray(a), kernel_path.asarray(b), out, 0.5, 2.0)
    op_a = a.swapaxes(-1, -2) if transa == "T" else a
    op_b = b.swapaxes(-1, -2) if transb == "T" else b
    want = 0.5 * numpy.matmul(op_a.astype(numpy.float64), op_b) + 2.0 * out0
    close(kernel_path, out, want.astype(dtype), dtype, exact_on_host=False)
    fresh = kernel_path.asarray(numpy.full(out0.shape, numpy.nan, dtype))
    kernels.gemm(transa, transb, kernel_path.asarray(a), kernel_path.asarray(b), fresh)    # beta 0: out never read
    close(kernel_path, fresh, numpy.matmul(op_a.astype(numpy.float64), op_b).astype(dtype), dtype, False)


def test_gemm_refuses_shapes_that_do_not_fit(kernel_path):
    a, b = kernel_path.asarray(numpy.zeros((3, 4))), kernel_path.asarray(numpy.zeros((5, 2)))
    with pytest.raises(ValueError, match="cannot multiply"):
        kernels.gemm("N", "N", a, b, kernel_path.asarray(numpy.zeros((3, 2))))
    with pytest.raises(ValueError, match="transa must be"):
        kernels.gemm("C", "N", a, a, kernel_path.asarray(numpy.zeros((3, 4))))


@pytest.mark.parametrize("dtype", DTYPES)
def test_array_plumbing(kernel_path, dtype):
    """zeros, fill, copy, add, the (0, 1) axis swap and one-hot rows, against NumPy."""
    x = sample((3, THREADS + 1, 4), dtype)
    move = kernel_path.asarray
    close(kernel_path, F.swap01(move(x)), x.transpose(1, 0, 2), dtype)
    close(kernel_path, F.zeros((2, THREADS), move(x)), numpy.zeros((2, THREADS), dtype), dtype)
    target = move(numpy.ones_like(x))
    close(kernel_path, F.copy_into(target, move(x)), x, dtype)
    close(kernel_path, F.add_into(target, move(x)), x + x, dtype)
    close(kernel_path, F.fill_(target, 2.5), numpy.full_like(x, 2.5), dtype)
    close(kernel_path, F.copied(move(x[0])), x[0], dtype)
    indices = numpy.array([0, 3, 4, -1, 2, 5] * 5)
    rows = F.one_hot_rows(move(indices), 5, dtype)
    with kernel_path.reference():
        close(kernel_path, rows, F.one_hot_rows(indices, 5, dtype), dtype)
    assert not to_numpy(rows)[3].any() and not to_numpy(rows)[5].any()      # outside [0, 5): a zero row


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("outer, channels, inner", [(1, 7, 1), (THREADS + 2, 3, 1), (4, 3, 30), (1, 5, 60)])
def test_sum_axes_and_bias_add(kernel_path, dtype, outer, channels, inner):
    x = sample((outer, channels, inner), dtype)
    b = sample((channels,), dtype, 1)
    acc = numpy.ones(channels, dtype)
    out = kernel_path.asarray(acc)
    kernels.sum_axes(kernel_path.asarray(x), into=out, inner=inner)
    close(kernel_path, out, acc + x.sum(axis=(0, 2)), dtype, exact_on_host=False)
    y = kernel_path.asarray(x)
    kernels.add_bias(y, kernel_path.asarray(b), inner=inner)
    close(kernel_path, y, x + b[None, :, None], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mse_loss_matches_numpy(kernel_path, dtype):
    pred, target = sample((THREADS + 5, 3), dtype), sample((THREADS + 5, 3), dtype, 1)
    loss, dpred = F.mse(kernel_path.asarray(pred), kernel_path.asarray(target))
    with kernel_path.reference():
        loss_ref, dpred_ref = F.mse(pred, target)
    assert loss.shape == () and float(loss) == pytest.approx(float(loss_ref), rel=1e-5)
    close(kernel_path, dpred, dpred_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_numpy(kernel_path, dtype, max_norm):
    from gpudl.functional import optim as rules
    grads = [sample(s, dtype, seed) for seed, s in enumerate([(7, 5), (THREADS * 11 + 3,), (2,)])]
    moved = [kernel_path.asarray(g) for g in grads]
    total = rules.clip_grad_norm(moved, max_norm)
    with kernel_path.reference():
        ref = [g.copy() for g in grads]
        total_ref = rules.clip_grad_norm(ref, max_norm)
    assert float(total) == pytest.approx(float(total_ref), rel=1e-13)
    for got, want in zip(moved, ref):
        close(kernel_path, got, want, dtype, exact_on_host=False)
    if max_norm == 1e3:
        for got, g in zip(moved, grads):
            numpy.testing.assert_array_equal(to_numpy(got), g)        # below the bound: scaled by exactly 1
