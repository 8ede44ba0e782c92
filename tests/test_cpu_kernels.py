"""The CPU kernels (gpudl.cpu, Numba) against the NumPy reference of each op in gpudl.functional, and the seam that
picks them (dispatch.kernels_for): which arrays take them, the reference where numba is missing or they are switched
off, the disk cache and its notice, `gpudl info`.

Each comparison runs the op twice, once on the CPU kernels (checked to have been called) and once with them switched
off. Where a kernel does the reference's arithmetic in the reference's order (im2col, col2im, pooling, activations,
the optimizer updates, copies) the bits must be equal; where BLAS or a sum's order differs, float rounding.
The CUDA kernels are held to the same reference in tests/test_kernels_*.py (host build, tests/cuda_host).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import gpudl
from gpudl import functional as F
from gpudl import models, nn, optim, train
from gpudl.functional import dispatch
from gpudl.geometry import Window

cpu = pytest.importorskip("gpudl.cpu", reason="the CPU kernels need numba")
DTYPES = [np.float32, np.float64]


@pytest.fixture
def both(monkeypatch):
    """run(fn) -> (fn() on the CPU kernels, fn() on the NumPy reference); fails unless the kernels were called."""
    calls = []
    for name in cpu.__all__:
        op = getattr(cpu, name)
        monkeypatch.setattr(cpu, name, lambda *a, _op=op, _name=name, **k: calls.append(_name) or _op(*a, **k))

    def run(fn):
        assert dispatch.cpu_kernels() is cpu
        calls.clear()
        on_kernels = fn()
        assert calls, "the CPU kernels did not run"
        monkeypatch.setattr(dispatch, "use_cpu_kernels", False)
        try:
            calls.clear()
            on_reference = fn()
            assert not calls, f"the reference called the CPU kernels {calls}"
        finally:
            monkeypatch.setattr(dispatch, "use_cpu_kernels", True)
        return on_kernels, on_reference
    return run


def as_list(result):
    return list(result) if isinstance(result, (tuple, list)) else [result]


def assert_same_bits(got, want):
    for a, b in zip(as_list(got), as_list(want), strict=True):
        a, b = np.atleast_1d(np.asarray(a)), np.atleast_1d(np.asarray(b))
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


def assert_close(got, want, dtype):
    tolerance = 2e-5 if dtype == np.float32 else 1e-12
    for a, b in zip(as_list(got), as_list(want), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype == dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * max(1.0, float(np.abs(b).max())))


def rand(shape, dtype, seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


GEOMETRIES = [  # (input shape, kernel, strides, pads): LeNet's, padding on every side, strides, a window the size of x
    ((3, 1, 12, 12), (5, 5), (1, 1), (2, 2, 2, 2)), ((2, 3, 7, 6), (3, 2), (2, 1), (1, 0, 1, 1)),
    ((4, 2, 9, 8), (3, 3), (2, 3), (0, 1, 2, 1)), ((2, 2, 5, 5), (5, 5), (1, 1), (0, 0, 0, 0)),
    ((5, 2, 6, 7), (1, 1), (1, 1), (0, 0, 0, 0)), ((1, 1, 4, 4), (4, 4), (4, 4), (0, 0, 0, 0)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kernel,strides,pads", GEOMETRIES)
def test_im2col_and_col2im_give_the_references_bits(both, shape, kernel, strides, pads, dtype):
    x = rand(shape, dtype)
    window = Window.with_pads(shape, kernel, strides, pads)
    for fill in (0.0, -np.inf):
        assert_same_bits(*both(lambda: F.im2col(x, window, fill)))
    col = rand((shape[0], shape[1]) + kernel + (window.oh, window.ow), dtype, seed=1)
    assert_same_bits(*both(lambda: F.col2im(col, window)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kernel,strides,pads", GEOMETRIES)
def test_conv2d_forward_and_backward_agree_with_the_reference(both, shape, kernel, strides, pads, dtype):
    x, W, b = rand(shape, dtype), rand((4, shape[1]) + kernel, dtype, 1), rand(4, dtype, 2)
    window = Window.with_pads(shape, kernel, strides, pads)
    y, _ = both(lambda: F.conv2d(x, W, b, window)[0])
    dy = rand(y.shape, dtype, 3)

    def backward(input_grad):
        y, saved = F.conv2d(x, W, b, window)
        into = (rand(W.shape, dtype, 4), rand(4, dtype, 5))         # gradients add into what is there
        dx, dW, db = F.conv2d_backward(dy, saved, W, into=into, input_grad=input_grad)
        assert dW is into[0] and db is into[1]
        return [y, dW, db] + ([] if dx is None else [dx])
    for input_grad in (True, False):
        assert_close(*both(lambda: backward(input_grad)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kernel,strides,pads", GEOMETRIES)
def test_pooling_gives_the_references_bits(both, shape, kernel, strides, pads, dtype):
    if max(pads[:2]) >= kernel[0] or max(pads[2:]) >= kernel[1]:
        pytest.skip("a pooling window must hold a real cell")
    x = rand(shape, dtype).round(1)                  # ties
    x[0, 0, 0, :2] = np.nan
    window = Window.with_pads(shape, kernel, strides, pads, pooling=True)
    (y, argmax), reference = both(lambda: F.max_pool2d(x, window))
    assert_same_bits((y, argmax), reference)
    assert argmax.dtype == F.pooling.argmax_type(*kernel)
    dy = rand(y.shape, dtype, 1)
    assert_same_bits(*both(lambda: F.max_pool2d_backward(dy, argmax, x.shape, window)))
    x[np.isnan(x)] = 1.0
    assert_close(*both(lambda: F.avg_pool2d(x, window)), dtype)
    assert_same_bits(*both(lambda: F.avg_pool2d_backward(dy, x.shape, window)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_activations_give_the_references_bits(both, name, dtype):
    v, dy = rand((7, 300), dtype, scale=30), rand((7, 300), dtype, 1)
    v[0, :4] = (np.nan, -0.0, 0.0, np.inf)
    forward, backward = getattr(F, name), getattr(F, name + "_backward")
    with np.errstate(invalid="ignore", over="ignore"):
        y, reference = both(lambda: forward(v))
        assert_same_bits(y, reference)
        assert_same_bits(*both(lambda: backward(v if name == "relu" else y, dy)))
        if name == "tanh":                           # the RNN step's form: into a given array
            assert_same_bits(*both(lambda: F.tanh(v, out=np.empty_like(v))))
            assert_same_bits(*both(lambda: F.tanh_backward(y, dy, out=np.empty_like(v))))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 4, 64, 300])
def test_products_and_the_dense_layer_agree_with_the_reference(both, n, dtype):
    x, W, b, dy = rand((n, 33), dtype), rand((33, 17), dtype, 1), rand(17, dtype, 2), rand((n, 17), dtype, 3)
    assert_close(*both(lambda: F.matmul(x, W)), dtype)
    assert_close(*both(lambda: F.matmul(W.T, x.T)), dtype)                       # transposed views: op T
    assert_close(*both(lambda: F.dense(x, W, b)), dtype)
    assert_close(*both(lambda: F.dense(x, W, b, out=np.full((n, 17), np.nan, dtype))), dtype)
    assert_close(*both(lambda: F.dense_backward(x, W, dy)), dtype)
    assert_close(*both(lambda: F.dense_backward(x, W, dy, into=(W.copy(), b.copy()))), dtype)
    assert_close(*both(lambda: F.matmul_add(x, F.transpose_for_products(W.T), dy.copy())), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_layers_fused_with_their_activation_agree_with_the_reference(both, name, dtype):
    x, W, b = rand((20, 33), dtype), rand((33, 17), dtype, 1), rand(17, dtype, 2)
    y, _ = both(lambda: F.dense_activation(x, W, b, name))
    dy = rand(y.shape, dtype, 3)
    assert_close(*both(lambda: F.dense_activation(x, W, b, name)), dtype)
    assert_close(*both(lambda: F.dense_activation_backward(x, W, y, dy, name, into=(W.copy(), b.copy()))), dtype)
    for shape, strides, pads in (((3, 2, 9, 8), (1, 1), (1, 1, 1, 1)), ((3, 2, 9, 8), (2, 1), (1, 0, 1, 1))):
        images, kernel, bias = rand(shape, dtype, 4), rand((4, 2, 3, 3), dtype, 5), rand(4, dtype, 6)
        window = Window.with_pads(shape, (3, 3), strides, pads)

        def step(kernel=kernel, images=images, bias=bias, window=window):
            out, saved = F.conv2d_activation(images, kernel, bias, window, name)
            grads = F.conv2d_activation_backward(out * 0.5, saved, kernel, out, name, into=(kernel.copy(), bias.copy()))
            return [out, *grads]
        assert_close(*both(step), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batched_and_transposed_gemm_agree_with_numpy(dtype):
    a, b = rand((3, 70, 40), dtype), rand((40, 50), dtype, 1)
    out = rand((3, 70, 50), dtype, 2)
    want = 2 * np.matmul(a, b) + 0.5 * out
    assert_close(cpu.gemm("N", "N", a, b, out, 2.0, 0.5), want, dtype)
    got = cpu.gemm("T", "T", b, a, np.empty((3, 50, 70), dtype))          # b^T a_n^T: both stored transposed
    assert_close(got, np.matmul(a, b).transpose(0, 2, 1), dtype)
    with pytest.raises(ValueError, match="does not fit"):
        cpu.gemm("N", "N", a, b.T.copy(), out)
    with pytest.raises(TypeError, match="share one dtype"):
        cpu.gemm("N", "N", a.astype(np.float32), b.astype(np.float64), out)


@pytest.mark.parametrize("dtype", DTYPES)
def test_losses_agree_with_the_reference(both, dtype):
    logits, labels = rand((50, 9), dtype, scale=10), np.arange(50) % 11 - 1      # -1, 9 and 10: no class
    assert_close(*both(lambda: F.softmax_cross_entropy_labels(logits, labels)), dtype)
    assert_close(*both(lambda: F.mse(logits, rand((50, 9), dtype, 1))), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_updates_give_the_references_bits(both, dtype):
    w, g = rand((40, 30), dtype), rand((40, 30), dtype, 1)

    def trained(make):
        opt = make([nn.Parameter(w.copy())])
        for _ in range(3):
            opt.params[0].grad[...] = g
            opt.step()
        return opt.params[0].data
    for make in (lambda p: optim.SGD(p, lr=0.1), lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
                 lambda p: optim.Adam(p, lr=0.01), lambda p: optim.Adam(p, lr=0.01, weight_decay=0.1)):
        assert_same_bits(*both(lambda: trained(make)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_clipping_and_array_plumbing_agree_with_the_reference(both, dtype):
    grads = [rand((30, 20), dtype, 1, scale=3), rand(20, dtype, 2)]

    def clipped():
        copies = [g.copy() for g in grads]
        return F.optim.clip_grad_norm(copies, 1.0), copies
    (norm, scaled), (norm_ref, scaled_ref) = both(clipped)
    assert_close(norm, norm_ref, np.float64)
    assert_close(scaled, scaled_ref, dtype)
    assert_same_bits(*both(lambda: F.zeros((3, 4), grads[0])))
    assert_same_bits(*both(lambda: F.fill_(grads[0].copy(), 2.5)))
    assert_same_bits(*both(lambda: F.copy_into(np.empty_like(grads[0]), grads[0][::-1])))
    assert_same_bits(*both(lambda: F.add_into(grads[0].copy(), grads[0])))
    x = rand((1, 5, 3), dtype)
    swapped, _ = both(lambda: F.swap01(x))
    assert_same_bits(swapped, x.transpose(1, 0, 2))
    assert swapped.flags.c_contiguous and not np.shares_memory(swapped, x)       # never a view, even when it could be


def test_an_overflowing_product_raises_under_numpys_errstate_as_numpy_would():
    big = np.full((2, 3), np.finfo(np.float32).max, np.float32)
    x = big.reshape(2, 1, 1, 3)
    with np.errstate(over="raise"):
        with pytest.raises(FloatingPointError, match="overflow encountered in (matmul|gemm)"):
            F.matmul(big, big.T)                                        # small: NumPy's own product
        with pytest.raises(FloatingPointError, match="overflow encountered in gemm"):
            F.matmul(np.full((300, 300), 1e30, np.float32), np.full((300, 300), 1e30, np.float32))   # a kernel's
        with pytest.raises(FloatingPointError, match="overflow encountered in conv2d"):
            F.conv2d(x, np.ones((1, 1, 1, 3), np.float32), np.zeros(1, np.float32), Window.of(x.shape, (1, 3), 1, 0))
        assert np.isinf(F.matmul(np.full((1, 1), np.inf, np.float32), np.ones((1, 1), np.float32))).all()  # inf in
    with np.errstate(over="ignore"):
        assert np.isinf(F.matmul(big, big.T)).all()


def test_the_kernels_refuse_to_mix_dtypes_and_name_the_op():
    x32, W64 = rand((2, 1, 5, 5), np.float32), rand((3, 1, 3, 3), np.float64)
    with pytest.raises(TypeError, match="conv2d: arrays must share one dtype"):
        F.conv2d(x32, W64, np.zeros(3), Window.of(x32.shape, 3, 1, "same"))
    W32, b32 = W64.astype(np.float32), np.zeros(3, np.float32)
    y, saved = F.conv2d_activation(x32, W32, b32, Window.of(x32.shape, 3, 1, "same"), "relu")
    with pytest.raises(TypeError, match="conv2d_backward: arrays must share one dtype"):  # ReLU's y, read in the kernel
        F.conv2d_activation_backward(np.ones_like(y), saved, W32, y.astype(np.float64), "relu")


# -- the seam ---------------------------------------------------------------------------------------------------------

def test_float_numpy_arrays_take_the_cpu_kernels_and_other_arrays_the_reference(monkeypatch):
    for dtype in DTYPES:
        assert dispatch.kernels_for(np.zeros(3, dtype)) is cpu
    for other in (np.zeros(3, np.float16), np.arange(3), np.zeros(3, bool), [1.0, 2.0], 1.0):
        assert dispatch.kernels_for(other) is None
    assert F.relu(np.array([-1, 2])).tolist() == [0, 2]                 # the reference keeps integer inputs working
    monkeypatch.setattr(dispatch, "use_cpu_kernels", False)
    assert dispatch.kernels_for(np.zeros(3, np.float32)) is None


def run_python(code, **env):
    full = dict(os.environ)
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=600)


LENET_STEP = """
import sys, numpy
import gpudl
from gpudl import models, nn, optim, train
gpudl.manual_seed(0)
model = models.LeNet5()
step = train.TrainStep(model, nn.SoftmaxCrossEntropy(), optim.SGD(model.parameters(), 0.01))
x = numpy.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(numpy.float32)
print(float(step(x, numpy.array([1, 2, 3]))), "gpudl.cpu" in sys.modules, "numba" in sys.modules)
"""


def test_without_numba_the_reference_runs_after_one_notice():
    done = run_python("import sys\nsys.modules['numba'] = None\n" + LENET_STEP)
    assert done.returncode == 0, done.stderr
    loss, cpu_loaded, _ = done.stdout.split()
    assert np.isfinite(float(loss)) and cpu_loaded == "False"
    assert done.stderr.count("the CPU kernels are not available") == 1
    assert "NumPy reference" in done.stderr


def test_switched_off_the_cpu_kernels_are_never_imported_and_give_the_same_step():
    off = run_python(LENET_STEP, GPUDL_CPU_KERNELS="0")
    on = run_python(LENET_STEP)
    assert off.returncode == 0 and on.returncode == 0, off.stderr + on.stderr
    assert off.stdout.split()[1:] == ["False", "False"] and on.stdout.split()[1] == "True"
    assert np.isclose(float(off.stdout.split()[0]), float(on.stdout.split()[0]), rtol=1e-5)
    bad = run_python("import numpy, gpudl", GPUDL_CPU_KERNELS="yes")
    assert bad.returncode != 0 and "GPUDL_CPU_KERNELS must be 0 or 1, got 'yes'" in bad.stderr


RELU = "import numpy, gpudl\nprint(gpudl.functional.relu(numpy.linspace(-1, 1, 7, dtype=numpy.float32)).tolist())"


def test_compiling_is_said_once_and_cached_for_the_next_process(tmp_path):
    first = run_python(RELU, GPUDL_CACHE_DIR=str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("gpudl: compiling the CPU kernels") == 1 and str(tmp_path) in first.stderr
    assert any(name.endswith(".nbi") for _, _, files in os.walk(tmp_path) for name in files)
    second = run_python(RELU, GPUDL_CACHE_DIR=str(tmp_path))
    assert second.returncode == 0 and second.stdout == first.stdout
    assert "compiling" not in second.stderr                 # loaded from the cache


def test_without_a_writable_cache_folder_the_kernels_compile_in_memory(tmp_path):
    blocked = tmp_path / "a file"
    blocked.write_text("")
    done = run_python(RELU + "\nprint(gpudl.cpu.cache_report())", GPUDL_CACHE_DIR=str(blocked / "cache"))
    assert done.returncode == 0, done.stderr
    assert "compiling the CPU kernels (in memory" in done.stderr
    want = np.maximum(np.linspace(-1, 1, 7, dtype=np.float32), 0).tolist()
    assert done.stdout.splitlines()[0] == str(want)
    assert "compiled in memory" in done.stdout.splitlines()[1]


def test_the_cache_folder_is_the_first_writable_candidate(tmp_path):
    blocked = tmp_path / "a file"
    blocked.write_text("")
    good = tmp_path / "good"
    assert cpu.loader.writable_folder([str(blocked), str(good)], "k") == str(good / "k")
    assert cpu.loader.writable_folder([str(blocked)], "k") is None
    assert len(cpu.loader.source_stamp("blas a")) == 64 and cpu.loader.source_stamp("a") != cpu.loader.source_stamp("b")


def test_gpudl_info_says_whether_the_cpu_kernels_are_compiled_and_cached(capsys):
    from gpudl.cli.info import cmd_info
    F.relu(np.ones(3, np.float32))
    cmd_info(None)
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("cpu kernels:"))
    assert f"numba {sys.modules['numba'].__version__}" in line
    assert "compiled and cached in" in line or "compiled in memory" in line


# -- training curves ---------------------------------------------------------------------------------------------------

def lenet_losses(steps=12, batch=16):
    gpudl.manual_seed(0)
    model = models.LeNet5()
    step = train.TrainStep(model, nn.SoftmaxCrossEntropy(), optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch * 2, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, batch * 2)
    return [float(step(images[k % 2 * batch:(k % 2 + 1) * batch], labels[k % 2 * batch:(k % 2 + 1) * batch]))
            for k in range(steps)]


def char_lstm_losses(steps=12):
    gpudl.manual_seed(0)
    model = models.CharLSTM(20, 32)
    step = train.TrainStep(model, nn.SequenceCrossEntropy(), optim.Adam(model.parameters(), lr=0.02))
    text = (3 * np.arange(8)[:, None] + np.arange(17)[None, :]) % 20      # each next character follows from the last
    return [float(step(text[:, :-1], text[:, 1:])) for _ in range(steps)]


@pytest.mark.parametrize("losses", [lenet_losses, char_lstm_losses], ids=["lenet5", "char-lstm"])
def test_training_curves_agree_with_the_reference_to_float32_rounding(monkeypatch, losses):
    on_kernels = losses()
    monkeypatch.setattr(dispatch, "use_cpu_kernels", False)
    on_reference = losses()
    # the same curve: both fall (the models learn), and step by step they differ by float32 rounding grown over the
    # steps (products summed in other orders, the LSTM's tanh to 2e-8): 2.2e-7 and 1.0e-7 of the loss at most, measured
    assert on_kernels[-1] < 0.8 * on_kernels[0] and on_reference[-1] < 0.8 * on_reference[0]
    np.testing.assert_allclose(on_kernels, on_reference, rtol=1e-5)


def test_every_op_functional_asks_a_kernel_set_for_exists_in_the_cpu_set():
    """The two kernel sets answer to the same names: whatever gpudl.functional calls on `kernels` (the CUDA set for
    cupy arrays) the CPU set has too, but one_hot (integer arrays take the reference) and graph (no recording on a
    CPU)."""
    import ast
    import pathlib
    called = set()
    for source in pathlib.Path(F.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value.func if isinstance(node.value, ast.Call) else node.value      # kernels_for(x).gemm
            if isinstance(owner, ast.Name) and owner.id in ("kernels", "kernels_for"):
                called.add(node.attr)
    assert {"conv2d", "gemm", "lstm_step"} <= called
    assert sorted(called - {"one_hot", "graph"} - set(dir(cpu))) == []


def _mark_part(p, parts, out, scale):
    """Part p of `parts` writes scale * p + parts into its share of out."""
    for i in range(p * out.size // parts, (p + 1) * out.size // parts):
        out[i] = scale * p + parts


def test_a_part_body_runs_on_every_part_with_a_body_compiled_for_each_argument_type():
    body = cpu.loader.Part(_mark_part)
    cpu.loader.threads_for(1 << 30)
    for dtype in (np.float64, np.float32, np.float64):
        out = np.full(7, -1, dtype)
        body.run(3, out, dtype(10))
        np.testing.assert_array_equal(out, [3, 3, 13, 13, 23, 23, 23])
    assert len(body._addresses) == 2        # one body per argument types, each called through its own address
    readonly = np.zeros(4)
    readonly.flags.writeable = False
    with pytest.raises(Exception, match="readonly|read-only|Cannot modify"):
        body.run(2, readonly, 1.0)          # compiled for its own type, where writing is refused


def _stepped_part(task, parts, done, order):
    """Task `task` (step task // parts, part task % parts) counts its calls in done[task] and marks in order[task]
    whether every part of the step before had finished when it began."""
    step = task // parts
    ready = 1
    for q in range(max(0, parts * (step - 1)), parts * step):
        ready = ready if done[q] == 1 else 0
    order[task] = ready
    done[task] += 1


def test_parts_in_steps_start_each_step_once_the_step_before_has_finished():
    body = cpu.loader.Part(_stepped_part)
    kept = gpudl.set_num_threads(2)
    try:
        done, order = np.zeros(5 * 3, np.int64), np.zeros(5 * 3, np.int64)
        body.run(3, done, order, steps=5)
    finally:
        gpudl.set_num_threads(kept)
    np.testing.assert_array_equal(done, 1)          # every (step, part) once
    np.testing.assert_array_equal(order, 1)


def _failing_part(p, parts, out, fail, scratch):
    """Part p raises ValueError when fail[p] is set, and MemoryError when `scratch` is too large to allocate; else it
    writes p into out[p]."""
    if fail[p]:
        raise ValueError("part told to fail")
    out[p] = p + np.empty(scratch, out.dtype).size * 0


def test_an_error_inside_a_part_body_is_raised_naming_the_body_and_the_part_still_works():
    body = cpu.loader.Part(_failing_part)
    cpu.loader.threads_for(1 << 30)
    out, fail = np.full(3, -1.0), np.array([False, True, True])
    with pytest.raises(RuntimeError, match="_failing_part: 2 of 3 parts"):
        body.run(3, out, fail, 1)
    with pytest.raises(RuntimeError, match="_failing_part: 3 of 3 parts"):
        body.run(3, out, fail & False, 1 << 50)         # np.empty of 8 PiB: MemoryError
    body.run(3, out, fail & False, 1)
    np.testing.assert_array_equal(out, [0, 1, 2])
