"""The fully connected layer: y_j = sum_i x_i w_ij + b_j, for a batch of rows x."""


def dense(x, W, b):
    """y = x W + b, with x (N, in), W (in, out), b (out,)."""
    return x @ W + b


def dense_backward(x, W, dy):
    """Gradients of y = x W + b: dx = dy W^T, dW = x^T dy, db = sum over the batch of dy."""
    return dy @ W.T, x.T @ dy, dy.sum(axis=0)
