"""MSE (the lecture's J) and softmax cross-entropy: values, stability, target forms, bad input."""
import numpy as np
import pytest

from gpudl import nn


def test_mse_is_half_the_mean_squared_norm():
    pred = np.array([[1.0, 2.0], [0.0, 0.0], [3.0, -1.0]])
    target = np.array([[0.0, 2.0], [1.0, 1.0], [3.0, 1.0]])
    loss = nn.MSELoss()
    J = loss(pred, target)
    assert J.shape == ()
    assert float(J) == pytest.approx((1 + 2 + 4) / 2 / 3)
    np.testing.assert_allclose(loss.backward(), (pred - target) / 3)


def test_cross_entropy_value_and_forms_agree():
    logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]])
    labels = np.array([0, 1])
    expected = -np.mean(np.log(np.exp(logits[[0, 1], labels]) / np.exp(logits).sum(1)))
    loss = nn.SoftmaxCrossEntropy()
    assert float(loss(logits, labels)) == pytest.approx(expected)
    d_labels = loss.backward()
    assert float(loss(logits, np.eye(3)[labels])) == pytest.approx(expected)
    np.testing.assert_allclose(loss.backward(), d_labels)


def test_cross_entropy_is_stable_for_large_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [-5000.0, 5000.0, 0.0]], np.float32)
    loss = nn.SoftmaxCrossEntropy()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = loss(logits, np.array([0, 0]))
    assert np.isfinite(value) and float(value) == pytest.approx(5000.0, rel=1e-6)
    assert value.dtype == np.float32
    assert np.isfinite(loss.backward()).all()


@pytest.mark.parametrize("labels,match", [
    (np.array([0, 3]), r"labels must lie in \[0, 3\)"),
    (np.array([-1, 0]), r"labels must lie in \[0, 3\)"),
    (np.array([0, 1, 2]), "3 labels for 2 rows"),
    (np.zeros((2, 4)), r"one-hot targets of shape \(2, 3\)"),
])
def test_cross_entropy_rejects_bad_targets(labels, match):
    with pytest.raises(ValueError, match=match):
        nn.SoftmaxCrossEntropy()(np.zeros((2, 3)), labels)


@pytest.mark.parametrize("loss,target", [(nn.MSELoss(), np.zeros((2, 3))),
                                         (nn.SoftmaxCrossEntropy(), np.array([0, 1]))])
def test_nan_reaching_a_loss_is_an_error(loss, target):
    pred = np.zeros((2, 3))
    pred[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        loss(pred, target)


def test_mse_rejects_mismatched_shapes_and_early_backward():
    with pytest.raises(ValueError, match=r"prediction shape \(4, 1\) != target shape \(4,\)"):
        nn.MSELoss()(np.zeros((4, 1)), np.zeros(4))
    with pytest.raises(RuntimeError, match="before forward"):
        nn.MSELoss().backward()


def test_loss_stays_on_the_device_as_a_0d_array(xp):
    value = nn.SoftmaxCrossEntropy()(xp.zeros((3, 2), dtype=xp.float32), xp.asarray([0, 1, 1]))
    assert isinstance(value, xp.ndarray) and value.shape == ()
    assert float(value) == pytest.approx(np.log(2))


def test_sequence_cross_entropy_is_the_row_loss_per_step_and_its_gradient():
    """(N, T, V) logits against (N, T) labels: the mean over all N*T steps; backward checked by central differences."""
    from gpudl.gradient_check import directional_derivatives
    rng = np.random.default_rng(2)
    logits, labels = rng.normal(size=(2, 3, 4)), rng.integers(0, 4, (2, 3))
    loss = nn.SequenceCrossEntropy()
    rows = nn.SoftmaxCrossEntropy()
    assert float(loss(logits, labels)) == pytest.approx(float(rows(logits.reshape(6, 4), labels.reshape(6))))
    np.testing.assert_array_equal(loss.backward(), rows.backward().reshape(2, 3, 4))
    analytic, numeric = directional_derivatives(lambda z: loss.forward(z, labels), lambda r: (loss.backward() * r,),
                                                [logits], [])
    assert analytic == pytest.approx(numeric, rel=1e-6)
    with pytest.raises(ValueError, match=r"logits \(N, T, V\) and integer targets \(N, T\)"):
        loss(logits, labels[:, :2])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        loss(logits, labels + 4)
