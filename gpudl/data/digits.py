"""Handwritten digits without a network: scikit-learn's bundled 8x8 set (1,797 images, 16 gray levels), resized to
28x28 so that LeNet-5 takes it like MNIST. By default the digit fills the frame (it tests better than MNIST's 20x20
box in a 28x28 frame: the 5x5 kernels see more of each coarse pixel); `box=20` gives the MNIST layout."""
import numpy

EXTRA_HINT = 'pip install "gpudl[examples]"'


def _interpolation_matrix(n_in, n_out):
    """R (n_out, n_in): out = R @ in is linear interpolation between pixel centres (half-pixel convention)."""
    src = (numpy.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = numpy.clip(src, 0, n_in - 1)
    lo = numpy.floor(src).astype(int)
    hi = numpy.minimum(lo + 1, n_in - 1)
    frac = src - lo
    R = numpy.zeros((n_out, n_in))
    R[numpy.arange(n_out), lo] += 1 - frac
    R[numpy.arange(n_out), hi] += frac
    return R


def resize_bilinear(images, height, width):
    """Bilinear resize of the last two axes of `images` (..., H, W) to (height, width); every output row of the
    interpolation matrices sums to 1, so a constant image stays constant."""
    images = numpy.asarray(images)
    rows = _interpolation_matrix(images.shape[-2], height)
    cols = _interpolation_matrix(images.shape[-1], width)
    return rows @ images @ cols.T


def load_digits(size=28, box=None, test_fraction=0.2, seed=0, dtype=numpy.float32):
    """((X_train, y_train), (X_test, y_test)): images (N, 1, size, size) scaled to [0, 1], labels (N,) int64.

    The split is stratified and seeded: each digit contributes `test_fraction` of its images to the test set.
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise ImportError(f"the default digits data set needs scikit-learn: {EXTRA_HINT}") from None
    box = size if box is None else box
    if not (0 < test_fraction < 1) or not (1 <= box <= size):
        raise ValueError(f"load_digits: need 0 < test_fraction < 1 and 1 <= box <= size, "
                         f"got test_fraction={test_fraction}, box={box}, size={size}")
    bunch = sk_load_digits()
    small = bunch.images / 16.0
    labels = bunch.target.astype(numpy.int64)
    images = numpy.zeros((len(small), 1, size, size))
    top = (size - box) // 2
    images[:, 0, top:top + box, top:top + box] = numpy.clip(resize_bilinear(small, box, box), 0, 1)
    rng = numpy.random.default_rng(seed)
    test = numpy.zeros(len(labels), dtype=bool)
    for digit in numpy.unique(labels):
        members = rng.permutation(numpy.flatnonzero(labels == digit))
        test[members[:round(len(members) * test_fraction)]] = True
    images = images.astype(dtype)
    return (images[~test], labels[~test]), (images[test], labels[test])
