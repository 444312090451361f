"""Float64 NumPy reference of the neural-model kernels (feature-major activations: (features,
batch)), used by test_nn.py. No pytest code here."""
import numpy as np


def linear_forward(xT, W, b=None):
    out = W.astype(np.float64) @ xT.astype(np.float64)
    return out + (0 if b is None else b.astype(np.float64)[:, None])


def linear_backward(doutT, xT, W):
    "(dxT, dW, dbias)"
    d, x, W = (a.astype(np.float64) for a in (doutT, xT, W))
    return W.T @ d, d @ x.T, d.sum(1)


def batchnorm_forward_train(xT, gamma, beta, rm, rv, momentum=0.1, eps=1e-5):
    "(out, mean, invstd, new_rm, new_rv)"
    x = xT.astype(np.float64)
    B = x.shape[1]
    mean = x.mean(1)
    var = x.var(1)
    invstd = 1 / np.sqrt(var + eps)
    out = (x - mean[:, None]) * invstd[:, None] * gamma[:, None] + beta[:, None]
    new_rm = (1 - momentum) * rm + momentum * mean
    new_rv = (1 - momentum) * rv + momentum * var * B / (B - 1)
    return out, mean, invstd, new_rm, new_rv


def batchnorm_forward_eval(xT, gamma, beta, rm, rv, eps=1e-5):
    x = xT.astype(np.float64)
    return (x - rm[:, None]) / np.sqrt(rv[:, None] + eps) * gamma[:, None] + beta[:, None]


def batchnorm_backward(doutT, xT, gamma, eps=1e-5):
    "(dxT, dgamma, dbeta) of the training-mode forward"
    d, x = doutT.astype(np.float64), xT.astype(np.float64)
    B = x.shape[1]
    mean = x.mean(1, keepdims=True)
    invstd = 1 / np.sqrt(x.var(1, keepdims=True) + eps)
    xhat = (x - mean) * invstd
    dgamma = (d * xhat).sum(1)
    dbeta = d.sum(1)
    dx = gamma[:, None] * invstd / B * (B * d - d.sum(1, keepdims=True) - xhat * (d * xhat).sum(1, keepdims=True))
    return dx, dgamma, dbeta


def batchnorm_loss(xT, gamma, beta, w, eps=1e-5):
    "sum(w * batchnorm(x)): a scalar whose gradient is batchnorm_backward(w, ...)"
    x = xT.astype(np.float64)
    out = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + eps)
    return float((w * (out * gamma[:, None] + beta[:, None])).sum())
