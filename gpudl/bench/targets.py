"""The project's performance targets: a ratio to PyTorch in the same run, a fraction of the device's copy bandwidth,
or seconds, each tied to the case that measures it."""
from dataclasses import dataclass
from typing import Optional


@dataclass
class Target:
    """A goal on one figure: `measure` is "ratio" (gpudl / peer median, at most `limit`), "bandwidth" (fraction of
    the device's copy bandwidth, at least `limit`) or "seconds" (at most `limit`)."""
    text: str
    device: str
    name: str
    size: str
    measure: str
    limit: float
    peer: Optional[str] = None


def targets(quick=False):
    """The project's performance targets, each tied to the case (and PyTorch peer) that measures it (full sizes only):
    issue 10's, issue 20's (the GPU step at the hardware's pace), which replace the looser ones of issue 10, and
    issue 21's (the CPU kernels)."""
    if quick:
        return [Target("a second process reaches its first training step in under 2 s without compiling",
                       "cpu", "startup to first step", "LeNet-5 b64, new process", "seconds", 2.0)]
    found = []
    for n in (64, 256, 1024):
        found += [
            Target(f"LeNet-5 step b{n} <= 0.5x PyTorch eager", "cuda", "lenet5 step", f"b{n}", "ratio", 0.5, "eager"),
            Target(f"LeNet-5 step b{n} no slower than PyTorch's whole-step CUDA graph", "cuda", "lenet5 step",
                   f"b{n}", "ratio", 1.0, "CUDA graph"),
            Target(f"LeNet-5 step b{n} <= 0.8x PyTorch's whole-step CUDA graph (stretch)", "cuda", "lenet5 step",
                   f"b{n}", "ratio", 0.8, "CUDA graph"),
        ]
    lstm = ("lstm seq fwd+bwd", "b64 T128 in128 H256")
    found += [
        Target("char-LSTM step b64 T64 H256 no slower than PyTorch nn.LSTM (cuDNN) eager", "cuda", "char-lstm step",
               "b64 T64 V64 H256", "ratio", 1.0, "nn.LSTM"),
        Target("char-LSTM step b64 T64 H256 no slower than PyTorch nn.LSTM's whole-step CUDA graph", "cuda",
               "char-lstm step", "b64 T64 V64 H256", "ratio", 1.0, "nn.LSTM CUDA graph"),
        Target("LSTM b64 T128 in128 H256 fwd+bwd no slower than cuDNN nn.LSTM", "cuda", *lstm, "ratio", 1.0,
               "nn.LSTM"),
        Target("LSTM b64 T128 in128 H256 fwd+bwd <= 0.6x cuDNN nn.LSTM (stretch)", "cuda", *lstm, "ratio", 0.6,
               "nn.LSTM"),
        Target("LSTM b64 T128 in128 H256 fwd+bwd >= 6x faster than an LSTMCell loop", "cuda", *lstm, "ratio", 1 / 6,
               "LSTMCell loop"),
        Target("Conv2D 3x3 64->64 56x56 b64 fwd+bwd within 1.5x of cuDNN", "cuda", "conv2d fwd+bwd",
               "b64 64->64 3x3 56x56 same", "ratio", 1.5, "nn.Conv2d"),
        # issue 21: the CPU kernels (Numba) ahead of PyTorch on the same cores, at --threads 1 and --threads 2 alike
        Target("2-core CPU: LeNet-5 step b64 <= 0.7x PyTorch CPU", "cpu", "lenet5 step", "b64", "ratio", 0.7,
               "eager"),
        Target("2-core CPU: LeNet-5 step b256 <= 0.7x PyTorch CPU", "cpu", "lenet5 step", "b256", "ratio", 0.7,
               "eager"),
        Target("2-core CPU: char-LSTM step no slower than PyTorch nn.LSTM", "cpu", "char-lstm step",
               "b64 T64 V64 H256", "ratio", 1.0, "nn.LSTM"),
        Target("2-core CPU: LSTM b64 T128 in128 H256 fwd+bwd no slower than PyTorch nn.LSTM", "cpu",
               "lstm seq fwd+bwd", "b64 T128 in128 H256", "ratio", 1.0, "nn.LSTM"),
        Target("2-core CPU: XOR MLP step faster than PyTorch's", "cpu", "xor mlp step", "2-4-1 b4", "ratio", 1.0,
               "eager"),
    ]
    for name in ("im2col", "col2im"):
        found.append(Target(f"{name} >= 75% of copy bandwidth", "cuda", name, "b64 64ch 56x56 3x3 pad1",
                            "bandwidth", 0.75))
    for kind in ("max", "avg"):
        for suffix, share in (("fwd", 0.75), ("fwd+bwd", 0.5)):
            found.append(Target(f"{kind}pool2d {suffix} >= {100 * share:.0f}% of copy bandwidth", "cuda",
                                f"{kind}pool2d {suffix}", "64x64x112x112 2x2", "bandwidth", share))
    for what, size in (("LeNet-5 b1024 conv1", "lenet5 b1024 conv1 1024x6x784"),
                       ("LSTM b64 T128 H256", "lstm b64 T128 H256 8192x1024x1")):
        found.append(Target(f"bias gradient of {what} >= 70% of copy bandwidth", "cuda", "bias gradient", size,
                            "bandwidth", 0.7))
    for dev in ("cpu", "cuda"):
        found.append(Target("a second process reaches its first training step in under 2 s without compiling",
                            dev, "startup to first step", "LeNet-5 b64, new process", "seconds", 2.0))
    return found
