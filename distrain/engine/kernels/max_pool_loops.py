"""The compiled loops of max_pool.py (numba; imported only on the numba path, see NOTE [ Compiled kernels ]).

Both work on C-contiguous (P, Q, H, W) stacks of planes and write into arrays the caller made.
"""
import numba


@numba.njit(cache=True, error_model="numpy")
def max_pool2d_forward(planes, kh, kw, sh, sw, ph, pw, dh, dw, best, taps):
    height, width = planes.shape[2], planes.shape[3]
    out_h, out_w = best.shape[2], best.shape[3]
    for p in range(planes.shape[0]):
        for q in range(planes.shape[1]):
            plane = planes[p, q]
            for oh in range(out_h):
                top = oh * sh - ph
                for ow in range(out_w):
                    left = ow * sw - pw
                    winner = -1
                    maximum = plane[0, 0]
                    for i in range(kh):
                        row = top + i * dh
                        if row < 0 or row >= height:
                            continue
                        for j in range(kw):
                            col = left + j * dw
                            if col < 0 or col >= width:
                                continue
                            value = plane[row, col]
                            # selects, not branches: on real data which tap wins is unpredictable
                            take = (winner < 0) | (value > maximum) | (value != value)
                            maximum = value if take else maximum
                            winner = i * kw + j if take else winner
                    best[p, q, oh, ow] = maximum
                    taps[p, q, oh, ow] = winner


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
