"""Small point sets for the perceptron and the MLP: XOR, and two linearly separable clouds."""
import numpy


def xor(dtype=numpy.float32):
    """The four XOR points: X (4, 2) and labels y (4,) in {0, 1}; no line separates the two classes."""
    X = numpy.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=dtype)
    y = numpy.array([0, 1, 1, 0], dtype=numpy.int64)
    return X, y


def separable_points(n=100, n_features=2, margin=0.1, seed=0, dtype=numpy.float32):
    """n points in [-1, 1]^n_features labelled 0/1 by a random hyperplane, none closer to it than `margin`.

    The labels come from a seeded random w and b (d = 1 where x . w + b >= 0), so a perceptron must converge on them
    (the perceptron convergence theorem: at most (R / margin)^2 updates with R the largest |x|).
    """
    if n < 2 or n_features < 1 or not (0 <= margin < 1):
        raise ValueError(f"separable_points: need n >= 2, n_features >= 1 and 0 <= margin < 1, "
                         f"got n={n}, n_features={n_features}, margin={margin}")
    rng = numpy.random.default_rng(seed)
    w = rng.normal(size=n_features)
    w /= numpy.linalg.norm(w)
    b = rng.uniform(-0.3, 0.3)
    points = []
    while sum(len(p) for p in points) < n:
        cand = rng.uniform(-1, 1, size=(2 * n, n_features))
        points.append(cand[numpy.abs(cand @ w + b) >= margin])
    X = numpy.concatenate(points)[:n]
    y = (X @ w + b >= 0).astype(numpy.int64)
    return X.astype(dtype), y
