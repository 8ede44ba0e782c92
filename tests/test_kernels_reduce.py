"""The sums of reduce.cu (bias gradients, a loss's mean, the global gradient norm) and the one-launch updates over a
table of arrays (fill, SGD, Adam): tier 2 (the host build, whose blocks run their threads together through the
barriers of cuda_host.h) and tier 3 (on a GPU).

A sum is deterministic: for a given shape the order of its additions is fixed, whatever the grid size, so the same
shape gives the same bits on every run. Piece sizes are lowered here so that small arrays take both passes.
"""
import numpy
import pytest
from cuda_host import build_library
from cuda_host.fixtures import SMALL_BLOCK
from cuda_host.host import HostKernel, cooperates
from gpudl.kernels import loader, reduce

from gpudl import functional as F
from gpudl import kernels
from gpudl.backend import to_numpy
from gpudl.functional import optim as rules

pytestmark = pytest.mark.usefixtures("small_launches")
DTYPES = [numpy.float32, numpy.float64]


def sample(shape, dtype, seed=0, scale=3.0):
    return (numpy.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def tolerance(dtype):
    return {"rtol": 2e-5, "atol": 1e-5} if dtype == numpy.float32 else {"rtol": 1e-12, "atol": 1e-12}


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of a few elements, so that the sums of small arrays go through both passes."""
    monkeypatch.setattr(reduce, "SHORT_COLUMN", 4)
    monkeypatch.setattr(reduce, "ROWS_PER_PART", 16)
    monkeypatch.setattr(reduce, "CHUNK", 40)
    monkeypatch.setattr(reduce, "NORM_CHUNK", 50)


# -- the host emulation of a block whose threads cooperate -------------------------------------------------------------

REVERSE = """
#include "{header}"
// Thread t writes its element to shared memory, waits for the whole block, then reads its mirror's: without the
// barrier (or with the threads run one after another) the block reads entries no thread has written yet.
extern "C" __global__ void reverse_blocks(const real_t* x, real_t* out)
{{
    __shared__ real_t part[64];
    const unsigned int t = threadIdx.x, base = blockIdx.x * blockDim.x;
    part[t] = x[base + t];
    __syncthreads();
    out[base + t] = part[blockDim.x - 1 - t];
    __syncthreads();
    part[t] = -1;
}}
"""


def test_host_blocks_run_their_threads_together_through_barriers(tmp_path):
    source = tmp_path / "reverse.cu"
    source.write_text(REVERSE.format(header=loader.KERNEL_DIR + "/common.cuh"))
    assert cooperates(str(source))
    counter = {"threads": 0, "launches": 0}
    kernel = HostKernel(build_library(str(source), numpy.float64, str(tmp_path)), "reverse_blocks", counter, True)
    x = numpy.arange(3 * 16, dtype=numpy.float64)
    out = numpy.zeros_like(x)
    kernel((3,), (16,), (x, out))
    numpy.testing.assert_array_equal(out, x.reshape(3, 16)[:, ::-1].ravel())
    assert counter == {"threads": 48, "launches": 1, "cooperative launches": 1}


def test_a_sum_over_a_block_uses_its_barriers_on_the_host(kernel_path):
    """reduce.cu is run with its blocks' threads together (the other kernel files one thread after another)."""
    if kernel_path.name != "host":
        pytest.skip("the host build's way of running a launch")
    counter = kernel_path.counter
    before = dict(counter)
    kernels.scaled_sum(numpy.ones(100), 1, 4)
    assert counter.get("cooperative launches", 0) - before.get("cooperative launches", 0) == 1
    assert cooperates(loader.KERNEL_DIR + "/reduce.cu") and not cooperates(loader.KERNEL_DIR + "/im2col.cu")


# -- sums over axes ---------------------------------------------------------------------------------------------------

SHAPES = [(3, 5, 1), (4, 7, 1), (9, 7, 1), (37, 11, 1), (70, 3, 1), (2, 3, 5), (3, 4, 20), (11, 2, 13), (1, 3, 90)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("outer, channels, inner", SHAPES)
def test_sum_axes_matches_numpy_in_one_pass_and_in_two(kernel_path, small_pieces, dtype, outer, channels, inner):
    x = sample((outer, channels, inner), dtype)
    want = x.astype(numpy.float64).sum(axis=(0, 2))
    out = kernel_path.asarray(numpy.full(channels, numpy.nan, dtype))
    kernels.sum_axes(kernel_path.asarray(x), out=out, inner=inner)
    numpy.testing.assert_allclose(to_numpy(out), want, **tolerance(dtype))
    into = kernel_path.asarray(numpy.ones(channels, dtype))
    kernels.sum_axes(kernel_path.asarray(x), into=into, inner=inner)
    numpy.testing.assert_allclose(to_numpy(into), 1 + want, **tolerance(dtype))


def launched(path, function, *args):
    """(function(*args), the number of launches it made on the host target, or None on a GPU)."""
    before = path.counter["launches"] if path.counter is not None else None
    result = function(*args)
    return result, None if before is None else path.counter["launches"] - before


@pytest.mark.parametrize("outer, channels, inner, launches", [
    (4, 9, 1, 1),           # a short column: one thread per column
    (16, 9, 1, 1),          # one part of rows per column: the blocks' sums are the result
    (40, 9, 1, 2),          # three parts, then their sums
    (4, 3, 10, 1),          # one chunk per channel
    (4, 3, 11, 2),          # two chunks, then their sums
])
def test_a_sum_takes_two_launches_only_past_one_piece(kernel_path, small_pieces, outer, channels, inner, launches):
    x = kernel_path.asarray(sample((outer, channels, inner), numpy.float64))
    out = kernel_path.asarray(numpy.zeros(channels))
    _, count = launched(kernel_path, kernels.sum_axes, x, out, None, inner)
    assert count in (launches, None)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("outer, channels, inner", [(300, 7, 1), (5, 3, 257), (2000, 1, 1)])
def test_the_same_shape_gives_the_same_bits_on_every_run_and_grid(kernel_path, monkeypatch, dtype, outer, channels,
                                                                   inner):
    """Repeated runs, and runs on grids of other sizes (which block sums which piece changes, not the order of the
    additions), give identical bits; the default piece sizes, with both passes."""
    x = kernel_path.asarray(sample((outer, channels, inner), dtype, scale=1e3) ** 3)    # rounding everywhere
    results = []
    for grid in (1, 2, 3, 5, 3):
        monkeypatch.setattr(loader, "max_blocks", lambda xp, grid=grid: grid)
        out = kernel_path.asarray(numpy.zeros(channels, dtype))
        results.append(to_numpy(kernels.sum_axes(x, out=out, inner=inner)).copy())
        mean = kernels.scaled_sum(x.reshape(-1), 1, x.size)
        results.append(to_numpy(mean).reshape(1).copy())
    for got in results[2::2]:
        numpy.testing.assert_array_equal(got, results[0])
    for got in results[3::2]:
        numpy.testing.assert_array_equal(got, results[1])
    want = to_numpy(x).astype(numpy.float64).sum(axis=(0, 2))
    numpy.testing.assert_allclose(results[0], want, rtol=1e-5 if dtype == numpy.float32 else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("outer, channels, inner", [(3, 5, 1), (37, 11, 1), (3, 4, 20), (1, 3, 90)])
def test_an_activation_backward_and_its_bias_sum_in_one_pass(kernel_path, small_pieces, dtype, name, outer, channels,
                                                              inner):
    """dv = dy * phi'(y) written, and its sums over o and i added into the bias gradient: the activation's backward
    kernel's dv exactly, and the sum of that dv."""
    v = sample((outer, channels, inner), dtype, seed=1)
    v.flat[0] = 0
    dy = sample(v.shape, dtype, seed=2)
    alpha = 1.5 if name == "sigmoid" else 1.0
    options = {"alpha": alpha} if name == "sigmoid" else {}
    move = kernel_path.asarray
    y = getattr(F, name)(move(v), **options)
    kept = move(v) if name == "relu" else y
    dv_alone = getattr(F, name + "_backward")(kept, move(dy), **options)
    db = move(numpy.ones(channels, dtype))
    dv = kernels.activation_backward_sum(name, y, move(dy), alpha, into=db, inner=inner)
    numpy.testing.assert_array_equal(to_numpy(dv), to_numpy(dv_alone))
    want = 1 + to_numpy(dv_alone).astype(numpy.float64).sum(axis=(0, 2))
    numpy.testing.assert_allclose(to_numpy(db), want, **tolerance(dtype))


def test_sums_refuse_what_does_not_fit(kernel_path):
    x = kernel_path.asarray(numpy.zeros((4, 6)))
    with pytest.raises(TypeError, match="one of out= .* and into="):
        kernels.sum_axes(x)
    with pytest.raises(ValueError, match=r"does not split into \(outer, 5, 1\)"):
        kernels.sum_axes(x, out=kernel_path.asarray(numpy.zeros(5)))
    with pytest.raises(ValueError, match="unknown activation 'softplus'"):
        kernels.activation_backward_sum("softplus", x, x, out=kernel_path.asarray(numpy.zeros(6)))
    with pytest.raises(ValueError, match="dy has shape"):
        kernels.activation_backward_sum("relu", x, x[:2], out=kernel_path.asarray(numpy.zeros(6)))


# -- the global gradient norm and the updates over a table of arrays --------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_by_the_global_norm_is_three_launches_for_any_number_of_arrays(kernel_path, small_pieces, dtype):
    grads = [sample(s, dtype, seed) for seed, s in enumerate([(7, 5), (131,), (2,), (3, 3, 3), (1,)])]
    moved = [kernel_path.asarray(g) for g in grads]
    _, count = launched(kernel_path, rules.clip_grad_norm, moved, 0.5)
    assert count in (3, None)
    total = numpy.sqrt(sum((g.astype(numpy.float64) ** 2).sum() for g in grads))
    scale = min(1.0, 0.5 / (total + 1e-6))
    for got, g in zip(moved, grads):
        numpy.testing.assert_allclose(to_numpy(got), g * dtype(scale), **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 1e-2)])
def test_sgd_over_every_parameter_in_one_launch_equals_one_launch_each(kernel_path, dtype, momentum, weight_decay):
    shapes = [(SMALL_BLOCK * 5 + 3,), (4, 6), (1,), (2, 3, 3, 3)]
    ws = [sample(s, dtype, k) for k, s in enumerate(shapes)]
    steps = [[sample(s, dtype, 10 * t + k) for k, s in enumerate(shapes)] for t in range(3)]
    move = kernel_path.asarray
    lr, count = move(numpy.full(1, 0.05, dtype)), move(numpy.zeros(1, numpy.int64))

    def together():
        params, velocities = [move(w) for w in ws], [None] * len(ws)
        for grads in steps:
            velocities, count_launches = launched(kernel_path, rules.sgd_steps, params, [move(g) for g in grads],
                                                  velocities, lr, momentum, weight_decay, count)
            assert count_launches in (1, None)
        return params, velocities

    def one_by_one():
        params, velocities = [move(w) for w in ws], [None] * len(ws)
        for grads in steps:
            for k, (w, g) in enumerate(zip(params, grads)):
                velocities[k] = rules.sgd_step(w, move(g), velocities[k], 0.05, momentum, weight_decay)
        return params, velocities
    got, want = together(), one_by_one()
    for a, b in zip(got[0] + [v for v in got[1] if v is not None], want[0] + [v for v in want[1] if v is not None]):
        numpy.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    assert int(to_numpy(count)[0]) == 3


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_over_every_parameter_in_one_launch_equals_one_launch_each(kernel_path, dtype):
    shapes = [(SMALL_BLOCK * 4 + 1,), (3, 5), (2,)]
    ws = [sample(s, dtype, k) for k, s in enumerate(shapes)]
    grads = [[sample(s, dtype, 10 * t + k) for k, s in enumerate(shapes)] for t in range(3)]
    move = kernel_path.asarray
    betas = (0.9, 0.999)

    def run(together):
        params = [move(w) for w in ws]
        ms, vs = [move(numpy.zeros_like(w)) for w in ws], [move(numpy.zeros_like(w)) for w in ws]
        lr, count, scalars = move(numpy.full(1, 1e-2, dtype)), move(numpy.zeros(1, numpy.int64)), \
            move(numpy.zeros(2, dtype))
        for step in grads:
            rules.adam_scalars(lr, count, betas, scalars)
            moved = [move(g) for g in step]
            if together:
                _, calls = launched(kernel_path, rules.adam_steps, params, moved, ms, vs, scalars, betas, 1e-8, 1e-3)
                assert calls in (1, None)
            else:
                for w, g, m, v in zip(params, moved, ms, vs):
                    rules.adam_step(w, g, m, v, scalars, betas, 1e-8, 1e-3)
        return params + ms + vs
    for a, b in zip(run(True), run(False)):
        numpy.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def test_zero_grads_fills_every_array_in_one_launch(kernel_path):
    grads = [kernel_path.asarray(numpy.ones(s, numpy.float32)) for s in [(3, 4), (SMALL_BLOCK * 7,), (1,)]]
    assert launched(kernel_path, rules.zero_grads, grads)[1] in (1, None)
    assert not any(to_numpy(g).any() for g in grads)


def test_a_table_is_made_once_per_set_of_arrays_and_checks_them(kernel_path):
    from gpudl.kernels.tables import array_table
    a, b = kernel_path.asarray(numpy.zeros(5)), kernel_path.asarray(numpy.zeros((2, 3)))
    first, n, total, dtype = array_table("t", [a, b])
    again, *_ = array_table("t", [a, b])
    assert again is first and (n, total, dtype) == (2, 11, numpy.dtype(numpy.float64))
    numpy.testing.assert_array_equal(to_numpy(first)[:3], [0, 5, 11])
    other, *_ = array_table("t", [b, a])
    assert other is not first and to_numpy(other)[1] == 6
    with pytest.raises(ValueError, match="array 1 of group 1 has shape"):
        array_table("t", [a, b], [a, a])
    with pytest.raises(TypeError, match="one dtype"):
        array_table("t", [a, kernel_path.asarray(numpy.zeros(3, numpy.float32))])
    with pytest.raises(ValueError, match="not C-contiguous"):
        array_table("t", [kernel_path.asarray(numpy.zeros((3, 4)))[:, 1]])


def test_the_bench_case_of_a_bias_gradient_replays_its_sums(kernel_path):
    """gpudl bench's bias-gradient case: its sums run from one recording from the second call on, and sum."""
    if kernel_path.name != "host":
        pytest.skip("the bench runs it on a GPU; here the host build stands in")
    from gpudl.bench.layer_cases import SUMS_PER_CALL, bias_gradient_cases
    from gpudl.kernels import loops
    loops.forget()
    (case,) = bias_gradient_cases(5, 3, 7, "test", devices=("cpu",))
    call = case.build("cpu")
    for _ in range(3):
        before = kernel_path.counter["launches"]
        call()
        assert kernel_path.counter["launches"] - before == SUMS_PER_CALL      # one launch each: 35 <= CHUNK
    assert len(loops._recordings) == 1
    loops.forget()


@pytest.mark.parametrize("block", [16, 64, 256])
@pytest.mark.parametrize("loads", [3, 19])
def test_sums_with_blocks_of_many_columns_and_deep_trees(kernel_path, monkeypatch, block, loads):
    """Blocks of 16 to 256 threads: a sum_rows block then covers 2 to 32 neighbouring columns (8 row lanes each) and
    a sum_planes block's tree is 4 to 8 levels deep; a sum_planes thread adds 3 or 19 elements of a piece (19: two
    rounds of PLANE_LOADS = 8 loads, then 3 one at a time); every sum against float64 NumPy, with both passes."""
    if kernel_path.name != "host":
        pytest.skip("a GPU runs the loader's own block")
    monkeypatch.setattr(loader, "BLOCK", block)
    monkeypatch.setattr(loader, "max_blocks", lambda xp: 3)
    monkeypatch.setattr(reduce, "ROWS_PER_PART", 24)
    monkeypatch.setattr(reduce, "CHUNK", loads * block + 5)
    for shape in [(70, 45, 1), (20, 45, 1), (9, 3, 70), (1, 2, 1000), (30, 2, 97)]:
        x = sample(shape, numpy.float64)
        out = numpy.zeros(shape[1])
        kernels.sum_axes(x, out=out, inner=shape[2])
        numpy.testing.assert_allclose(out, x.sum(axis=(0, 2)), rtol=1e-12, atol=1e-12)
        y = numpy.tanh(x)
        db = numpy.ones(shape[1])
        dv = kernels.activation_backward_sum("tanh", y, x, into=db, inner=shape[2])
        numpy.testing.assert_allclose(db, 1 + (x * (1 - y * y)).sum(axis=(0, 2)), rtol=1e-12, atol=1e-12)
        numpy.testing.assert_array_equal(dv, x * (1 - y * y))
    flat = sample((5 * block + 3,), numpy.float64)
    assert float(kernels.scaled_sum(flat, 0.5, 7)) == pytest.approx(0.5 * flat.sum() / 7, rel=1e-12)
    grads = [sample((3 * block + 1,), numpy.float64, 1), sample((4, 5), numpy.float64, 2)]
    total = float(kernels.clip_by_global_norm([g.copy() for g in grads], 1.0))
    assert total == pytest.approx(numpy.sqrt(sum((g ** 2).sum() for g in grads)), rel=1e-12)
