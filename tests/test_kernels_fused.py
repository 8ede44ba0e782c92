"""The fused kernels (optim.cu, softmax.cu) against the NumPy path: tier 2 (host build) and tier 3 (on a GPU).

The ops are called through gpudl.functional, so the dispatch is tested too. Launches are capped at SMALL_GRID blocks
of SMALL_BLOCK threads, fewer threads than elements (or rows), so every grid-stride loop goes round.
"""
import numpy
import pytest
from cuda_host.fixtures import SMALL_BLOCK, SMALL_GRID

from gpudl import functional as F
from gpudl import kernels
from gpudl import nn, optim
from gpudl.backend import to_numpy
from gpudl.functional import optim as rules

pytestmark = pytest.mark.usefixtures("small_launches")
DTYPES = [numpy.float32, numpy.float64]
THREADS = SMALL_BLOCK * SMALL_GRID


def launches(path):
    return path.counter["launches"] if path.counter is not None else None


def assert_same_update(path, got, ref, dtype):
    """Bit for bit on the host target (the NumPy path's operations in the same order and precision); on a GPU
    within a few ulp, since nvcc may fuse a*b+c into one rounding."""
    if path.name == "host":
        numpy.testing.assert_array_equal(to_numpy(got), ref)
    else:
        tol = dict(rtol=1e-6, atol=1e-7) if dtype == numpy.float32 else dict(rtol=1e-12, atol=1e-14)
        numpy.testing.assert_allclose(to_numpy(got), ref, **tol)


# -- optimizer updates ----------------------------------------------------------------------------------------------

def sgd_trajectory(path, dtype, shape, momentum, weight_decay, steps=3, kernel=True):
    rng = numpy.random.default_rng(0)
    w0 = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(steps)]
    w = path.asarray(w0) if kernel else w0.copy()
    velocity = None
    for g in grads:
        velocity = rules.sgd_step(w, path.asarray(g) if kernel else g, velocity, 0.05, momentum, weight_decay)
    return w, velocity


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("shape", [(5,), (7, 11), (3, 2, 5, 5)])
def test_sgd_step_matches_numpy(kernel_path, dtype, momentum, weight_decay, shape):
    before = launches(kernel_path)
    w, velocity = sgd_trajectory(kernel_path, dtype, shape, momentum, weight_decay)
    if kernel_path.counter is not None:
        assert launches(kernel_path) - before == 3          # one launch per step, whatever the rule
        assert int(numpy.prod(shape)) > THREADS or shape == (5,)
    with kernel_path.reference():
        w_ref, velocity_ref = sgd_trajectory(kernel_path, dtype, shape, momentum, weight_decay, kernel=False)
    assert_same_update(kernel_path, w, w_ref, dtype)
    assert w.dtype == dtype
    if momentum:
        assert_same_update(kernel_path, velocity, velocity_ref, dtype)
    else:
        assert velocity is None and velocity_ref is None


def adam_trajectory(path, dtype, shape, weight_decay, steps, kernel=True):
    rng = numpy.random.default_rng(1)
    w0 = rng.standard_normal(shape).astype(dtype)
    grads = [(rng.standard_normal(shape) * 10.0 ** rng.integers(-4, 2)).astype(dtype) for _ in range(steps)]
    move = path.asarray if kernel else numpy.array
    w, m, v = move(w0), move(numpy.zeros(shape, dtype)), move(numpy.zeros(shape, dtype))
    lr, count = move(numpy.full(1, 1e-2, dtype)), move(numpy.zeros(1, numpy.int64))
    scalars = move(numpy.zeros(2, dtype))
    for g in grads:
        rules.adam_scalars(lr, count, (0.9, 0.999), scalars)
        rules.adam_step(w, move(g), m, v, scalars, (0.9, 0.999), 1e-8, weight_decay)
    assert int(to_numpy(count)[0]) == steps
    return w, m, v


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("shape", [(3,), (6, 9)])
def test_adam_steps_match_numpy(kernel_path, dtype, weight_decay, shape):
    before = launches(kernel_path)
    w, m, v = adam_trajectory(kernel_path, dtype, shape, weight_decay, steps=5)
    if kernel_path.counter is not None:
        assert launches(kernel_path) - before == 10         # the step's scalars, then the update
    with kernel_path.reference():
        w_ref, m_ref, v_ref = adam_trajectory(kernel_path, dtype, shape, weight_decay, steps=5, kernel=False)
    for got, ref in ((w, w_ref), (m, m_ref), (v, v_ref)):
        assert_same_update(kernel_path, got, ref, dtype)
    assert not numpy.allclose(w_ref, adam_trajectory(kernel_path, dtype, shape, weight_decay, 1, kernel=False)[0])


def test_optim_kernels_reject_mismatched_buffers(kernel_path):
    w = kernel_path.asarray(numpy.zeros((4, 3), numpy.float32))
    with pytest.raises(ValueError, match="sgd_step: grad has shape"):
        rules.sgd_step(w, kernel_path.asarray(numpy.zeros((3, 4), numpy.float32)), None, 0.1)
    with pytest.raises(ValueError, match="adam_step: v has shape .* dtype float64"):
        rules.adam_step(w, w.copy(), w.copy(), kernel_path.asarray(numpy.zeros((4, 3))),
                        kernel_path.asarray(numpy.ones(2, numpy.float32)), (0.9, 0.999), 1e-8)


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-3),
    lambda ps: optim.SGD(ps, lr=0.1),
    lambda ps: optim.Adam(ps, lr=1e-2, weight_decay=1e-3),
])
def test_optimizers_take_the_kernel_path_and_agree(kernel_path, make):
    """Through the public API: a model's parameters on the kernel path follow the NumPy path step for step."""
    rng = numpy.random.default_rng(2)
    shapes = [(6, 5, 3, 3), (6,), (40, 10)]
    start = [rng.standard_normal(s).astype(numpy.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(numpy.float32) for s in shapes] for _ in range(3)]

    def run(move):
        params = [nn.Parameter(move(a)) for a in start]
        opt = make(params)
        for step_grads in grads:
            opt.zero_grad()
            assert not any(to_numpy(p.grad).any() for p in params)
            for p, g in zip(params, step_grads):
                p.grad += move(g)
            opt.step()
        return [to_numpy(p.data) for p in params]

    before = launches(kernel_path)
    got = run(kernel_path.asarray)
    if kernel_path.counter is not None:
        # per step, whatever the number of parameters: one fill of every gradient (zero_grad), one fused update of
        # every parameter, Adam's scalars
        adam = isinstance(make([nn.Parameter(numpy.zeros(1))]), optim.Adam)
        assert launches(kernel_path) - before == 3 * (2 + adam)
    with kernel_path.reference():
        ref = run(numpy.array)
    for a, b in zip(got, ref):
        numpy.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# -- softmax cross-entropy ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2, 10, 37, 100])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_softmax_cross_entropy_matches_numpy(kernel_path, dtype, k, scale):
    n = THREADS + 5                                           # more rows than threads: the row loop goes round
    rng = numpy.random.default_rng(k)
    z = (rng.standard_normal((n, k)) * scale).astype(dtype)   # 1e4: exp would overflow without the row maximum
    labels = rng.integers(0, k, n)
    before = launches(kernel_path)
    loss, dz = F.softmax_cross_entropy_labels(kernel_path.asarray(z), kernel_path.asarray(labels))
    if kernel_path.counter is not None:
        assert launches(kernel_path) - before == 2           # the rows, then their mean
    with kernel_path.reference():
        loss_ref, dz_ref = F.softmax_cross_entropy_labels(z, labels)
    tol = dict(rtol=2e-5, atol=1e-6) if dtype == numpy.float32 else dict(rtol=1e-12, atol=1e-15)
    assert numpy.isfinite(loss_ref) and numpy.isfinite(dz_ref).all()
    numpy.testing.assert_allclose(float(loss), float(loss_ref), **tol)
    numpy.testing.assert_allclose(to_numpy(dz), dz_ref, **tol)
    assert dz.dtype == dtype and dz.shape == (n, k)
    if k == 1:
        assert float(loss) == 0 and not to_numpy(dz).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_kernel_propagates_nan_and_ignores_labels_out_of_range(kernel_path, dtype):
    z = numpy.arange(4 * 3, dtype=dtype).reshape(4, 3)
    labels = numpy.array([0, 3, -1, 2])              # rows 1 and 2 match no class, as a row of zeros one-hot
    loss, dz = F.softmax_cross_entropy_labels(kernel_path.asarray(z), kernel_path.asarray(labels))
    with kernel_path.reference():
        loss_ref, dz_ref = F.softmax_cross_entropy_labels(z, labels)
    numpy.testing.assert_allclose(float(loss), float(loss_ref), rtol=1e-6)
    numpy.testing.assert_allclose(to_numpy(dz), dz_ref, rtol=1e-6, atol=1e-7)
    z[1, 2] = numpy.nan
    loss, dz = F.softmax_cross_entropy_labels(kernel_path.asarray(z), kernel_path.asarray(labels))
    assert numpy.isnan(float(loss)) and numpy.isnan(to_numpy(dz)[1]).all() and numpy.isfinite(to_numpy(dz)[0]).all()


def test_softmax_cross_entropy_loss_layer_takes_the_kernel_path(kernel_path):
    """nn.SoftmaxCrossEntropy with integer labels (int32 too) launches one kernel; its checks stay in place."""
    rng = numpy.random.default_rng(3)
    z = rng.standard_normal((50, 10)).astype(numpy.float32)
    labels = rng.integers(0, 10, 50).astype(numpy.int32)
    layer = nn.SoftmaxCrossEntropy()
    before = launches(kernel_path)
    loss = layer(kernel_path.asarray(z), kernel_path.asarray(labels))
    if kernel_path.counter is not None:
        assert launches(kernel_path) - before == 2        # the rows, then their mean
    assert loss.shape == () and loss.dtype == numpy.float32
    with kernel_path.reference():
        ref = nn.SoftmaxCrossEntropy()
        loss_ref = ref(z, labels)
    numpy.testing.assert_allclose(float(loss), float(loss_ref), rtol=1e-6)
    numpy.testing.assert_allclose(to_numpy(layer.backward()), ref.backward(), rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        layer(kernel_path.asarray(z), kernel_path.asarray(labels + 1))


def test_softmax_kernel_rejects_bad_labels(kernel_path):
    z = kernel_path.asarray(numpy.zeros((4, 3), numpy.float32))
    with pytest.raises(ValueError, match="expected 4 integer labels"):
        kernels.softmax_cross_entropy(z, kernel_path.asarray(numpy.zeros(3, numpy.int64)))
    with pytest.raises(ValueError, match="expected 4 integer labels"):
        kernels.softmax_cross_entropy(z, kernel_path.asarray(numpy.zeros(4, numpy.float32)))


def test_training_steps_of_a_conv_net_on_the_kernel_path_match_numpy(kernel_path):
    """Conv, pooling, the fused loss and the fused SGD together: two steps agree with the NumPy kernel_path."""
    rng = numpy.random.default_rng(4)
    x = rng.standard_normal((6, 1, 8, 8)).astype(numpy.float32)
    labels = rng.integers(0, 3, 6)

    def run(move, model_path):
        model = nn.Sequential(nn.Conv2D(1, 2, 3, padding="same", rng=numpy.random.default_rng(0)), nn.ReLU(),
                              nn.MaxPool2D(2), nn.Flatten(), nn.Dense(32, 3, rng=numpy.random.default_rng(1)))
        model_path(model)
        loss, opt = nn.SoftmaxCrossEntropy(check=False), optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        values = []
        for _ in range(2):
            opt.zero_grad()
            values.append(float(loss(model(move(x)), move(labels))))
            model.backward(loss.backward())
            opt.step()
        return values, [to_numpy(p.data) for p in model.parameters()]

    before = launches(kernel_path)
    got_loss, got = run(kernel_path.asarray, kernel_path.move)
    if kernel_path.counter is not None:   # per step at least: im2col, pooling forward and backward, the loss, 4 updates
        assert launches(kernel_path) - before >= 2 * (3 + 1 + 4)
    with kernel_path.reference():
        ref_loss, ref = run(numpy.array, lambda model: model)
    numpy.testing.assert_allclose(got_loss, ref_loss, rtol=1e-5)
    for a, b in zip(got, ref):
        numpy.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert got_loss[1] < got_loss[0]
