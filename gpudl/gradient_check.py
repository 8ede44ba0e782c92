"""Checking a backward against central differences, in the manner of Chainer's check_backward.

For a random direction d over the inputs and parameters, and random weightings R of the outputs,
<grad, d> from backward must match (L(theta + eps d) - L(theta - eps d)) / (2 eps) with L = sum(R * forward(x)).
"""
import numpy

from .backend import get_array_module


def directional_derivatives(forward, backward, inputs, params, seed=0, eps=1e-6):
    """(analytic, numeric) derivatives of L = sum_k sum(R_k * y_k) along one random direction.

    `forward(*inputs)` computes one output y, or a tuple of outputs y_k, from the current values of `inputs` and of
    each Parameter in `params`; `backward(R)` gets the weighting (an array, or a tuple like the outputs), returns the
    gradients of the inputs (a tuple, one per input) and fills each Parameter's .grad. Meant for float64.
    """
    xp = get_array_module(*inputs)
    rng = numpy.random.default_rng(seed)

    def random_like(a):
        return xp.asarray(rng.standard_normal(a.shape)).astype(a.dtype)

    def as_tuple(y):
        return y if isinstance(y, tuple) else (y,)

    y = forward(*inputs)
    weights = tuple(random_like(part) for part in as_tuple(y))
    for p in params:
        p.grad[...] = 0
    input_grads = backward(weights if isinstance(y, tuple) else weights[0])
    dirs_in = [random_like(a) for a in inputs]
    dirs_p = [random_like(p.data) for p in params]
    analytic = sum(float((g * d).sum()) for g, d in zip(input_grads, dirs_in))
    analytic += sum(float((p.grad * d).sum()) for p, d in zip(params, dirs_p))

    def loss_at(sign):
        shifted = [a + sign * eps * d for a, d in zip(inputs, dirs_in)]
        originals = [p.data.copy() for p in params]
        for p, d in zip(params, dirs_p):
            p.data += sign * eps * d
        value = sum(float((w * part).sum()) for w, part in zip(weights, as_tuple(forward(*shifted))))
        for p, original in zip(params, originals):
            p.data[...] = original
        return value

    numeric = (loss_at(+1) - loss_at(-1)) / (2 * eps)
    return analytic, numeric


def check_layer(layer, x, seed=0, rtol=1e-6, atol=1e-8):
    """Assert that layer.backward agrees with central differences for its input and all its parameters.

    Returns the analytic directional derivative (a test can insist that it is not zero).
    """
    analytic, numeric = directional_derivatives(
        layer.forward, lambda dy: (layer.backward(dy),), [x], layer.parameters(), seed=seed)
    if not numpy.isclose(analytic, numeric, rtol=rtol, atol=atol):
        raise AssertionError(f"{layer!r}: backward gives {analytic!r} along a random direction, "
                             f"central differences give {numeric!r}")
    return analytic
