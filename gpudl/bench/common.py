"""What a benchmark case is, the one builder of an op's fwd and fwd+bwd cases, and the inputs both sides share.

A case builds, for one device, a zero-argument callable that does the work once; allocating inputs and creating
layers happens in the build, outside the timed region. gpudl builders take "cpu" or "cuda"; PyTorch builders take a
torch device string. Memory-bound cases carry the bytes they must read and write once (inputs and outputs, a lower
bound on the traffic) for the GB/s column; GEMM-bound cases carry their floating-point operations for TFLOP/s.
PyTorch's forward-only figures run under no_grad (inference, its fastest path); its fwd+bwd figures go through
autograd and compute dx, as gpudl's backward always does. Both sides use float32.
"""
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Optional

import numpy

from ..backend import to_device

FLOAT = numpy.float32
BYTES = 4
ALL_DEVICES = ("cpu", "cuda")


class Unavailable(Exception):
    """A case cannot be built here (a model this build of gpudl lacks, a layer PyTorch has no twin for)."""


@dataclass
class Case:
    name: str                      # what is timed, e.g. "conv2d fwd+bwd"
    size: str                      # the shapes, e.g. "b64 64->64 3x3 56x56"
    build: Callable                # build(device) -> fn, device "cpu" or "cuda"
    peers: dict = field(default_factory=dict)  # PyTorch peer label -> build(torch_device) -> fn
    bytes: Optional[int] = None    # bytes read and written once per call (memory-bound cases)
    flops: Optional[int] = None    # floating-point operations per call (GEMM-bound cases)
    kind: str = "op"               # "op", "model" (a whole training step) or "startup" (a fresh process)
    devices: tuple = ALL_DEVICES

    @property
    def key(self):
        return f"{self.name} [{self.size}]"


def fwd_and_bwd(name, size, build, peers, devices=ALL_DEVICES, flops=None, bytes=None):
    """The two cases of one op: `name fwd` times the forward, `name fwd+bwd` the forward then the backward.

    build(dev, backward) -> fn is gpudl's side and `peers` maps each PyTorch label to peer(dev, backward) -> fn.
    `flops` or `bytes` is the pair (forward cost, backward cost); the fwd+bwd case carries their sum.
    """
    cases = []
    for backward, suffix in ((False, "fwd"), (True, "fwd+bwd")):
        costs = {kind: cost[0] + (cost[1] if backward else 0)
                 for kind, cost in (("flops", flops), ("bytes", bytes)) if cost is not None}
        cases.append(Case(f"{name} {suffix}", size, partial(build, backward=backward),
                          {label: partial(peer, backward=backward) for label, peer in peers.items()},
                          devices=devices, **costs))
    return cases


def gpudl_variant(forward, backward_of, backward):
    """`forward`, or (backward=True) a step that runs forward and then backward_of(what forward returned)."""
    if not backward:
        return forward
    return lambda: backward_of(forward())


def torch_variant(torch, forward, inputs, grads, backward):
    """`forward` under no_grad (inference), or (backward=True) autograd through it with `grads` as the output
    gradients, the gradients of `inputs` cleared first so every call computes them anew."""
    if not backward:
        def infer():
            with torch.no_grad():
                forward()
        return infer

    def step():
        for tensor in inputs:
            tensor.grad = None
        torch.autograd.backward(forward(), grads)
    return step


def torch_module():
    """PyTorch set up as the peer (TF32 off on both GEMMs and convolutions, cuDNN autotuning on), or None."""
    try:
        import torch
    except ImportError:
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    return torch


def require_torch():
    """torch_module(), or Unavailable when PyTorch is not installed."""
    torch = torch_module()
    if torch is None:
        raise Unavailable("PyTorch is not installed")
    return torch


def rand(shape, dev, seed=0, scale=1.0):
    """A float32 array of standard normal draws (times `scale`) on `dev`, the same for the same seed."""
    rng = numpy.random.default_rng(seed)
    return to_device((scale * rng.standard_normal(shape)).astype(FLOAT), dev)


def trand(torch, shape, dev, seed=0, scale=1.0, grad=False):
    """rand's PyTorch counterpart: a float32 tensor on `dev`, with requires_grad when `grad`."""
    gen = torch.Generator().manual_seed(seed)
    t = (scale * torch.randn(shape, generator=gen)).to(dev)
    return t.requires_grad_(grad)


def nbytes(*shapes):
    """Bytes of float32 arrays of these shapes together."""
    return BYTES * sum(int(numpy.prod(s)) for s in shapes)
