"""The compiled loops of relu.py (numba; imported only on the numba path, see NOTE [ Compiled kernels ]).

Both work on flat C-contiguous arrays and write into an array the caller made.
"""
import numba


@numba.njit(cache=True, error_model="numpy")
def relu_forward(input, out):
    zero = input.dtype.type(0)
    for index in range(input.size):
        value = input[index]
        out[index] = zero if value <= zero else value  # as numpy.maximum(x, 0): NaN stays, -0.0 becomes 0.0


@numba.njit(cache=True, error_model="numpy")
def relu_backward(grad, output, out):
    zero, one = grad.dtype.type(0), grad.dtype.type(1)
    for index in range(grad.size):
        out[index] = grad[index] * (one if output[index] > zero else zero)  # as grad * (output > 0)
