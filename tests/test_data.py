"""Data: point sets, digits and its resize, MNIST IDX files (every failure mode), the seeded batch loader."""
import gzip
import os

import numpy
import pytest

from gpudl.data import (DataLoader, IDXError, load_digits, load_mnist, random_shift, read_idx, resize_bilinear,
                        separable_points, xor)


def test_xor_points():
    X, y = xor()
    numpy.testing.assert_array_equal(y, (X[:, 0] != X[:, 1]).astype(int))


def test_separable_points_are_separable_with_margin_and_seeded():
    X, y = separable_points(300, n_features=3, margin=0.2, seed=5)
    X2, y2 = separable_points(300, n_features=3, margin=0.2, seed=5)
    numpy.testing.assert_array_equal(X, X2)
    assert set(y.tolist()) == {0, 1} and X.shape == (300, 3)
    assert not numpy.array_equal(X, separable_points(300, n_features=3, margin=0.2, seed=6)[0])
    # a least-squares fit to +-1 finds a separating direction when the classes are separable with a margin
    A = numpy.c_[X, numpy.ones(len(X))]
    w = numpy.linalg.lstsq(A, 2.0 * y - 1, rcond=None)[0]
    assert ((A @ w > 0) == (y == 1)).all()


def test_resize_bilinear_keeps_constants_and_interpolates():
    numpy.testing.assert_allclose(resize_bilinear(numpy.full((2, 8, 8), 0.7), 28, 28), 0.7)
    image = numpy.arange(16.0).reshape(4, 4)
    numpy.testing.assert_allclose(resize_bilinear(image, 4, 4), image)
    # doubling a 1-D ramp 0, 1: half-pixel centres give 0, 0.25, 0.75, 1
    numpy.testing.assert_allclose(resize_bilinear(numpy.array([[0.0, 1.0]]), 1, 4), [[0, 0.25, 0.75, 1]])


def test_load_digits_split_shapes_range_and_determinism():
    (Xtr, ytr), (Xte, yte) = load_digits(seed=0)
    assert Xtr.shape[1:] == (1, 28, 28) and Xtr.dtype == numpy.float32
    assert len(Xtr) + len(Xte) == 1797 and abs(len(Xte) - 0.2 * 1797) < 10
    assert 0 <= Xtr.min() and Xtr.max() <= 1 and Xtr.max() > 0.9
    assert numpy.bincount(yte).min() >= 30  # stratified: every digit is in the test set
    (Xtr2, _), _ = load_digits(seed=0)
    numpy.testing.assert_array_equal(Xtr, Xtr2)
    assert not numpy.array_equal(Xte, load_digits(seed=1)[1][0])


def test_load_digits_without_scikit_learn_names_the_extra(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "gpudl\[examples\]"'):
        load_digits()


# ---------------------------------------------------------------- IDX files

def _idx(magic, dims, data=None):
    body = bytes(int(numpy.prod(dims))) if data is None else data
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + body


def _mnist(folder, n=5, images=None, labels=None, gz=True, split="t10k"):
    rng = numpy.random.default_rng(0)
    pix = rng.integers(0, 256, (n, 28, 28), dtype=numpy.uint8)
    lab = rng.integers(0, 10, n, dtype=numpy.uint8)
    images = _idx(2051, (n, 28, 28), pix.tobytes()) if images is None else images
    labels = _idx(2049, (n,), lab.tobytes()) if labels is None else labels
    for stem, raw in ((f"{split}-images-idx3-ubyte", images), (f"{split}-labels-idx1-ubyte", labels)):
        path = os.path.join(folder, stem + (".gz" if gz else ""))
        with open(path, "wb") as f:
            f.write(gzip.compress(raw) if gz else raw)
    return pix, lab


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_reads_gzipped_and_raw_files(tmp_path, gz):
    pix, lab = _mnist(tmp_path, gz=gz)
    X, y = load_mnist(tmp_path, "test")
    assert X.shape == (5, 1, 28, 28) and X.dtype == numpy.float32
    numpy.testing.assert_allclose(X[:, 0] * 255, pix, atol=1e-3)
    numpy.testing.assert_array_equal(y, lab)


@pytest.mark.parametrize("case, match", [
    ("image_magic", "magic number 2049, expected 2051"),
    ("label_magic", "magic number 2051, expected 2049"),
    ("truncated", "truncated: the header promises"),
    ("trailing", "unexpected byte"),
    ("size", "images of size 32x32, expected 28x28"),
    ("count", "holds 5 images but .* holds 4 labels"),
    ("label_value", "label 12 is not a digit"),
    ("short", "too short"),
])
def test_load_mnist_refuses_bad_files_naming_the_file(tmp_path, case, match):
    good_images = _idx(2051, (5, 28, 28))
    files = {
        "image_magic": dict(images=_idx(2049, (5, 28, 28))),
        "label_magic": dict(labels=_idx(2051, (5,))),
        "truncated": dict(images=good_images[:-100]),
        "trailing": dict(images=good_images + b"xx"),
        "size": dict(images=_idx(2051, (5, 32, 32))),
        "count": dict(labels=_idx(2049, (4,))),
        "label_value": dict(labels=_idx(2049, (5,), bytes([1, 2, 12, 3, 4]))),
        "short": dict(labels=b"\x00\x00"),
    }[case]
    _mnist(tmp_path, **files)
    with pytest.raises(IDXError, match=match) as info:
        load_mnist(tmp_path, "test")
    assert "t10k-" in str(info.value)


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    _mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(IDXError, match="corrupt or truncated gzip"):
        load_mnist(tmp_path, "test")


def test_missing_folder_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "nope")
    _mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="no train-images-idx3-ubyte"):
        load_mnist(tmp_path, "train")


def test_read_idx_rejects_non_byte_types(tmp_path):
    path = tmp_path / "floats"
    path.write_bytes(bytes([0, 0, 0x0D, 1]) + (1).to_bytes(4, "big") + bytes(4))
    with pytest.raises(IDXError, match="not an IDX file of unsigned bytes"):
        read_idx(path)


# ---------------------------------------------------------------- loader

def _batches(loader):
    return [(x.copy(), y.copy()) for x, y in loader]


def test_loader_covers_every_sample_once_per_epoch():
    X = numpy.arange(10, dtype=numpy.float32)[:, None]
    loader = DataLoader(X, numpy.arange(10), batch_size=3, seed=0)
    batches = _batches(loader)
    assert [len(x) for x, _ in batches] == [3, 3, 3, 1] and len(loader) == 4
    seen = numpy.concatenate([y for _, y in batches])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    for x, y in batches:
        numpy.testing.assert_array_equal(x[:, 0], y)
    assert len(DataLoader(X, numpy.arange(10), batch_size=3, drop_last=True)) == 3


def test_loader_shuffling_is_seeded_and_resumable():
    X, y = numpy.zeros((50, 1), numpy.float32), numpy.arange(50)
    order = lambda loader: numpy.concatenate([b for _, b in loader])  # noqa: E731
    a, b, c = (DataLoader(X, y, 8, seed=s) for s in (7, 7, 8))
    first_a, first_b = order(a), order(b)
    numpy.testing.assert_array_equal(first_a, first_b)
    assert not numpy.array_equal(first_a, order(c))
    assert not numpy.array_equal(first_a, order(a))  # a new permutation each epoch
    state = b.state_dict()
    expected = order(b)
    fresh = DataLoader(X, y, 8, seed=123)
    fresh.load_state_dict(state)
    numpy.testing.assert_array_equal(order(fresh), expected)


def test_loader_without_shuffle_keeps_order_and_checks_sizes():
    y = numpy.arange(7)
    numpy.testing.assert_array_equal(numpy.concatenate([b for _, b in DataLoader(y[:, None], y, 3, shuffle=False)]), y)
    with pytest.raises(ValueError, match="7 inputs but 6 targets"):
        DataLoader(y[:, None], y[:6])
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(y[:, None], y, 0)


def test_random_shift_moves_images_with_zero_fill():
    x = numpy.zeros((20, 1, 6, 6), numpy.float32)
    x[:, 0, 2:4, 2:4] = 1.0
    rng = numpy.random.default_rng(0)
    out = random_shift(2)(x, rng)
    assert out.shape == x.shape
    numpy.testing.assert_allclose(out.sum(axis=(1, 2, 3)), 4.0)  # the blob stays whole: only moved
    assert len({tuple(numpy.argwhere(o[0])[0]) for o in out}) > 3
    numpy.testing.assert_array_equal(random_shift(0)(x, rng), x)
    edge = numpy.ones((50, 1, 4, 4), numpy.float32)
    assert random_shift(1)(edge, rng).min() == 0.0  # the vacated border is zero
