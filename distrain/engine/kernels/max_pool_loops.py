"""The compiled loops of max_pool.py (numba; imported only on the numba path, see NOTE [ Compiled kernels ]).

All work on C-contiguous (P, Q, H, W) stacks of planes and write into arrays the caller made.

A general forward (kernel extents known at run time, a select per tap) measured slower
than the NumPy reference's whole-array passes on every window (64x32x32x32 float32:
19 ms against 11 ms for 3x3 stride 2 padding 1, 67 against 35 for 3x3 stride 1, 34
against 12 for 2x2 stride 1; with `v > m` only and no NaN test still 9, 36 and 22 ms),
so only the 2x2 stride-2 window (the common one) has a compiled forward: unrolled,
`v > m` only (branch-free), and a cheap test per output row (`v - v` is NaN only for NaN
or an infinity) that redoes the row with PyTorch's NaN rule when one appears: 1.1 ms,
taps included, against 1.6 ms for NumPy's four `maximum` passes without the taps.
The backward is compiled for every window (a scatter in PyTorch's output order).
"""
import numba


@numba.njit(cache=True, error_model="numpy")
def max_pool2d_forward_2x2(planes, best, taps):
    out_h, out_w = best.shape[2], best.shape[3]
    for p in range(planes.shape[0]):
        for q in range(planes.shape[1]):
            plane, best_plane, taps_plane = planes[p, q], best[p, q], taps[p, q]
            for oh in range(out_h):
                upper, lower = plane[2 * oh], plane[2 * oh + 1]
                check = upper[0] - upper[0]
                for ow in range(out_w):
                    a, b, c, d = upper[2 * ow], upper[2 * ow + 1], lower[2 * ow], lower[2 * ow + 1]
                    maximum, winner = a, 0
                    take = b > maximum
                    maximum, winner = (b, 1) if take else (maximum, winner)
                    take = c > maximum
                    maximum, winner = (c, 2) if take else (maximum, winner)
                    take = d > maximum
                    maximum, winner = (d, 3) if take else (maximum, winner)
                    check += (a - a) + (b - b) + (c - c) + (d - d)
                    best_plane[oh, ow] = maximum
                    taps_plane[oh, ow] = winner
                if check != check:  # a NaN or an infinity in this row: PyTorch's rule (NaN wins, the last one)
                    for ow in range(out_w):
                        maximum, winner = upper[2 * ow], 0
                        maximum, winner = _nan_rule(upper[2 * ow + 1], 1, maximum, winner)
                        maximum, winner = _nan_rule(lower[2 * ow], 2, maximum, winner)
                        maximum, winner = _nan_rule(lower[2 * ow + 1], 3, maximum, winner)
                        best_plane[oh, ow] = maximum
                        taps_plane[oh, ow] = winner


@numba.njit(cache=True, error_model="numpy", inline="always")
def _nan_rule(value, tap, maximum, winner):
    take = (value > maximum) | (value != value)
    return (value, tap) if take else (maximum, winner)


@numba.njit(cache=True, error_model="numpy")
def max_pool2d_backward(grad, taps, kw, sh, sw, ph, pw, dh, dw, grad_input):
    out_h, out_w = grad.shape[2], grad.shape[3]
    for p in range(grad.shape[0]):
        for q in range(grad.shape[1]):
            for oh in range(out_h):
                for ow in range(out_w):
                    tap = taps[p, q, oh, ow]
                    i = tap // kw
                    grad_input[p, q, oh * sh - ph + i * dh, ow * sw - pw + (tap - i * kw) * dw] += grad[p, q, oh, ow]


@numba.njit(cache=True, error_model="numpy")
def max_pool2d_backward_2x2(grad_bits, taps, input_bits, minus_zero):
    """The 2x2 stride-2 windows tile the input: each pixel is written once, no zeroing pass.

    On the bits (the float arrays viewed as same-size integers): a select per pixel on
    the tap compiles to branches, which mispredict on real taps (3.8 ms for a 64x32x16x16
    gradient), a mask `bits & -(tap == k)` does not (0.9 ms). The winner gets 0 + its
    gradient, as the general loop's sum from zero (-0.0 becomes 0.0), the others 0.
    """
    out_h, out_w = grad_bits.shape[2], grad_bits.shape[3]
    for p in range(grad_bits.shape[0]):
        for q in range(grad_bits.shape[1]):
            grad_plane, taps_plane, input_plane = grad_bits[p, q], taps[p, q], input_bits[p, q]
            for oh in range(out_h):
                upper, lower = input_plane[2 * oh], input_plane[2 * oh + 1]
                for ow in range(out_w):
                    bits = grad_plane[oh, ow]
                    bits = bits & -(bits != minus_zero)
                    tap = taps_plane[oh, ow]
                    upper[2 * ow] = bits & -(tap == 0)
                    upper[2 * ow + 1] = bits & -(tap == 1)
                    lower[2 * ow] = bits & -(tap == 2)
                    lower[2 * ow + 1] = bits & -(tap == 3)
