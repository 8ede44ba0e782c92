"""Data augmentation for images: random translations, drawn from the loader's seeded generator."""
from ..backend import device_of, get_array_module, to_device


def random_shift(max_shift=2):
    """A loader transform moving each image (N, C, H, W) by up to `max_shift` pixels in each direction, the vacated
    border filled with zeros. Small shifts teach a convolutional network that a digit is the same digit wherever it
    sits, which matters when there are few training images."""
    if not (isinstance(max_shift, int) and max_shift >= 0):
        raise ValueError(f"random_shift: max_shift must be a non-negative int, got {max_shift!r}")

    def transform(x, rng):
        if max_shift == 0:
            return x
        xp = get_array_module(x)
        n, c, h, w = x.shape
        s = max_shift
        padded = xp.pad(x, ((0, 0), (0, 0), (s, s), (s, s)))
        dy, dx = (to_device(rng.integers(0, 2 * s + 1, size=n), device_of(x)) for _ in range(2))
        rows = (dy[:, None] + xp.arange(h)[None, :])[:, None, :, None]
        cols = (dx[:, None] + xp.arange(w)[None, :])[:, None, None, :]
        batch = xp.arange(n)[:, None, None, None]
        chans = xp.arange(c)[None, :, None, None]
        return padded[batch, chans, rows, cols]

    return transform
