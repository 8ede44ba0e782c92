"""Layer cases: Dense, Conv2D and the pooling layers forward and forward + backward, im2col and col2im alone, and
the sums behind bias gradients."""
from .. import functional as F
from .. import nn
from ..functional.dispatch import kernels_for
from ..geometry import Window, output_size, pad_amounts
from ..nn.init import manual_seed
from .common import ALL_DEVICES, Case, fwd_and_bwd, gpudl_variant, nbytes, rand, require_torch, torch_variant, trand


def layer_build(make_layer, x_shape):
    """gpudl's side of a layer case: layer.forward(x), or forward then backward(dy) with a fixed random dy."""
    def build(dev, backward):
        manual_seed(0)
        layer = make_layer().to(dev)
        x = rand(x_shape, dev)
        dy = rand(layer.forward(x).shape, dev, seed=1) if backward else None
        return gpudl_variant(lambda: layer.forward(x), lambda _: layer.backward(dy), backward)
    return build


def module_build(make_module, x_shape):
    """The PyTorch twin of layer_build: the module make_module(torch) on a random x, dx computed as gpudl does."""
    def build(dev, backward):
        torch = require_torch()
        module = make_module(torch).to(dev)
        x = trand(torch, x_shape, dev, grad=backward)
        dy = torch.randn_like(module(x).detach()) if backward else None
        return torch_variant(torch, lambda: module(x), [x], dy, backward)
    return build


def _layer_cases(name, size, make_layer, peer, make_module, x_shape, devices, **cost):
    return fwd_and_bwd(name, size, layer_build(make_layer, x_shape), {peer: module_build(make_module, x_shape)},
                       devices, **cost)


def dense_cases(n, fin, fout, devices=ALL_DEVICES):
    flops = 2 * n * fin * fout
    return _layer_cases("dense", f"b{n} {fin}->{fout}", lambda: nn.Dense(fin, fout),
                        "nn.Linear", lambda torch: torch.nn.Linear(fin, fout), (n, fin), devices,
                        flops=(flops, 2 * flops))


def conv_cases(n, c, f, k, hw, padding, devices=ALL_DEVICES, label=""):
    """Conv2D with stride 1; the kernel size is odd, so 'same' pads alike on both sides (as PyTorch's padding)."""
    pad, _ = pad_amounts(hw, k, 1, padding)
    out = output_size(hw, k, 1, pad, pad)
    flops = 2 * n * f * c * k * k * out * out
    return _layer_cases("conv2d", f"{label}b{n} {c}->{f} {k}x{k} {hw}x{hw} {padding}",
                        lambda: nn.Conv2D(c, f, k, padding=padding),
                        "nn.Conv2d", lambda torch: torch.nn.Conv2d(c, f, k, padding=pad), (n, c, hw, hw), devices,
                        flops=(flops, 2 * flops))


def pool_cases(kind, n, c, hw, k, devices=ALL_DEVICES):
    x_shape, y_shape = (n, c, hw, hw), (n, c, hw // k, hw // k)
    layer = nn.MaxPool2D if kind == "max" else nn.AvgPool2D
    moved = nbytes(x_shape, y_shape)

    def module(torch):
        if kind == "max":
            return torch.nn.MaxPool2d(k)
        return torch.nn.AvgPool2d(k, count_include_pad=False)
    return _layer_cases(f"{kind}pool2d", f"{n}x{c}x{hw}x{hw} {k}x{k}", lambda: layer(k),
                        f"nn.{kind.capitalize()}Pool2d", module, x_shape, devices, bytes=(moved, moved))


def unroll_cases(n, c, hw, k, devices=ALL_DEVICES):
    """im2col and col2im of a k x k window with stride 1 and 'same' padding, alone."""
    pad = k // 2
    window = Window.of((n, c, hw, hw), k, 1, pad)
    x_shape, col_shape = (n, c, hw, hw), (n, c, k, k, hw, hw)
    moved = nbytes(x_shape, col_shape)
    size = f"b{n} {c}ch {hw}x{hw} {k}x{k} pad{pad}"

    def im2col(dev):
        x = rand(x_shape, dev)
        return lambda: F.im2col(x, window)

    def col2im(dev):
        col = rand(col_shape, dev)
        return lambda: F.col2im(col, window)

    def unfold(dev):
        torch = require_torch()
        x = trand(torch, x_shape, dev)
        return lambda: torch.nn.functional.unfold(x, k, padding=pad)

    def fold(dev):
        torch = require_torch()
        col = trand(torch, (n, c * k * k, hw * hw), dev)
        return lambda: torch.nn.functional.fold(col, (hw, hw), k, padding=pad)

    return [Case("im2col", size, im2col, {"F.unfold": unfold}, bytes=moved, devices=devices),
            Case("col2im", size, col2im, {"F.fold": fold}, bytes=moved, devices=devices)]


SUMS_PER_CALL = 16     # bias-gradient sums per timed call (recorded and replayed as one graph on a GPU)


def bias_gradient_cases(outer, channels, inner, label, devices=("cuda",)):
    """The sum of an (outer, C, inner) gradient over its first and last axes, as a bias gradient is summed
    (reduce.cu through kernels.sum_axes), against torch.sum over the same axes; memory-bound: it reads the array once.

    One sum takes the GPU a few microseconds, less than the host takes to launch it, so a call does SUMS_PER_CALL
    of them, and gpudl's are replayed from one recording (kernels.replayed: a CUDA graph), as in a recorded training
    step: the figure is the kernels' time, not the host's. PyTorch's peer runs its sums eagerly."""
    shape = (outer, channels, inner)

    def mine(dev):
        x = rand(shape, dev)
        kernels = kernels_for(x)
        if kernels is None:
            return lambda: [x.sum(axis=(0, 2)) for _ in range(SUMS_PER_CALL)]
        out = F.zeros((channels,), x)

        def sums():
            for _ in range(SUMS_PER_CALL):
                kernels.sum_axes(x, out=out, inner=inner)
        return lambda: kernels.replayed("bench bias gradient", (x, out), sums)

    def peer(dev):
        x = trand(require_torch(), shape, dev)
        return lambda: [x.sum(dim=(0, 2)) for _ in range(SUMS_PER_CALL)]
    return [Case("bias gradient", f"{label} {outer}x{channels}x{inner}", mine, {"torch.sum": peer},
                 bytes=SUMS_PER_CALL * nbytes(shape), devices=devices)]
