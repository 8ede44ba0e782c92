"""SGD and Adam against their textbook update formulas; gradient clipping; bad hyper-parameters."""
import numpy as np
import pytest

from gpudl import nn, optim
from gpudl.nn import Parameter


def param(values, grad):
    p = Parameter(np.array(values, dtype=np.float64))
    p.grad[...] = grad
    return p


def test_plain_sgd_step():
    p = param([1.0, -2.0], [0.5, 0.25])
    optim.SGD([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, [1.0 - 0.05, -2.0 - 0.025])


def test_sgd_momentum_and_weight_decay_follow_pytorch():
    w0, g, lr, mu, lam = np.array([1.0, -2.0]), np.array([0.5, 0.25]), 0.1, 0.9, 0.01
    p = param(w0, g)
    opt = optim.SGD([p], lr=lr, momentum=mu, weight_decay=lam)
    opt.step()
    v1 = g + lam * w0
    w1 = w0 - lr * v1
    np.testing.assert_allclose(p.data, w1)
    opt.step()   # same gradient again
    v2 = mu * v1 + (g + lam * w1)
    np.testing.assert_allclose(p.data, w1 - lr * v2)


def test_adam_steps_match_the_bias_corrected_formula():
    w, g1, g2 = np.array([0.3, -0.7, 2.0]), np.array([0.1, -0.2, 0.05]), np.array([-0.3, 0.1, 0.4])
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    p = param(w, g1)
    opt = optim.Adam([p], lr=lr)
    m = v = np.zeros(3)
    for t, g in enumerate([g1, g2], start=1):
        p.grad[...] = g
        opt.step()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        np.testing.assert_allclose(p.data, w, rtol=1e-12)


def test_first_adam_step_moves_each_weight_by_about_lr():
    p = param([0.0, 0.0], [1e-3, -50.0])
    optim.Adam([p], lr=0.01).step()
    np.testing.assert_allclose(p.data, [-0.01, 0.01], rtol=1e-4)


def test_zero_grad_and_state_round_trip():
    p = param([1.0, 2.0], [1.0, 1.0])
    opt = optim.Adam([p], lr=0.1)
    opt.step()
    state = opt.state_dict()
    opt.zero_grad()
    assert not p.grad.any()
    other = optim.Adam([param([1.0, 2.0], [0.0, 0.0])], lr=0.1)
    other.load_state_dict(state)
    assert other.steps == 1
    np.testing.assert_array_equal(other.m[0], opt.m[0])
    np.testing.assert_array_equal(other.v[0], opt.v[0])


def test_clip_grad_norm_scales_to_the_global_norm():
    a, b = param([0.0], [3.0]), param([0.0, 0.0], [0.0, 4.0])
    total = optim.clip_grad_norm([a, b], max_norm=1.0)
    assert float(total) == pytest.approx(5.0)
    norm_after = np.sqrt((a.grad ** 2).sum() + (b.grad ** 2).sum())
    assert norm_after == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(b.grad, [0.0, 0.8], rtol=1e-5)


def test_clip_grad_norm_leaves_small_gradients_alone():
    a = param([0.0, 0.0], [0.3, 0.4])
    optim.clip_grad_norm([a], max_norm=1.0)
    np.testing.assert_array_equal(a.grad, [0.3, 0.4])


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=-0.1), lambda ps: optim.SGD(ps, lr=0.1, momentum=1.5),
    lambda ps: optim.Adam(ps, lr=0), lambda ps: optim.SGD([], lr=0.1),
    lambda ps: optim.clip_grad_norm(ps, max_norm=0),
])
def test_bad_hyper_parameters_are_rejected(make):
    with pytest.raises(ValueError):
        make([param([1.0], [1.0])])


def test_optimizer_rejects_non_parameters():
    with pytest.raises(TypeError, match="model.parameters"):
        optim.SGD([np.zeros(3)], lr=0.1)


def test_sgd_trains_xor_with_an_mlp():
    import gpudl
    gpudl.manual_seed(0)
    model = nn.Sequential(nn.Dense(2, 4), nn.Sigmoid(), nn.Dense(4, 1), nn.Sigmoid())
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    y = np.array([[0], [1], [1], [0]], np.float32)
    loss, opt = nn.MSELoss(), optim.SGD(model.parameters(), lr=2.0, momentum=0.9)
    for _ in range(2000):
        opt.zero_grad()
        loss(model(x), y)
        model.backward(loss.backward())
        opt.step()
    np.testing.assert_array_equal(model(x) > 0.5, y > 0.5)


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), lambda ps: optim.Adam(ps, lr=0.1)])
def test_setting_lr_between_steps_takes_effect(make):
    """lr lives in an array the update reads (so a replayed step follows it): setting it after the first step
    changes the next one; lr = tiny all but stops the parameters."""
    p = param([1.0, -2.0], [0.5, 0.25])
    opt = make([p])
    opt.step()
    before = p.data.copy()
    opt.lr = 1e-300
    opt.step()
    np.testing.assert_allclose(p.data, before, rtol=0, atol=1e-200)
    opt.lr = 0.1
    opt.step()
    assert not np.allclose(p.data, before)
    assert opt.lr == 0.1 and opt.steps == 3 and opt.state_dict()["steps"] == 3
