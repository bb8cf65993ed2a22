"""The compiled loop of col2im.py (numba; imported only on the numba path, see NOTE [ Compiled kernels ]).

Indices are flat and unsigned on purpose: numba wraps a signed index that might be
negative (a compare and an add per access), which keeps LLVM from vectorising the
inner add. Measured on the small CNN's col2im (18.9 MB of column gradients, 1 thread,
2-core AMD EPYC): 4.9 ms with 4-D signed indexing, 4.4 ms with row views, 2.0 ms like
this; the reference's strided passes take 5.7 ms.
"""
import numba
from numba import uint64


@numba.njit(cache=True, error_model="numpy")
def col2im(taps, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, planes):
    """planes (C, N, H, W) = the sum, tap by tap, of taps (C, KH, KW, N, OH, OW) at the pixels they read.

    Both arrays are C-contiguous. One (channel, image) plane at a time: zeroed, then every
    tap adds its rows into it while it sits in the L1 cache. Per tap, only the output
    columns whose pixel lies inside the image are visited (bounds computed once), so
    the inner loop has no branch.
    """
    channels, k_h, k_w, n, out_h, out_w = taps.shape
    height, width = planes.shape[2], planes.shape[3]
    source, target = taps.reshape(-1), planes.reshape(-1)
    zero = planes.dtype.type(0)
    plane_size, out_plane_size = height * width, out_h * out_w
    column_step = uint64(stride_w)
    for c in range(channels):
        for image in range(n):
            plane = (c * n + image) * plane_size
            for k in range(uint64(plane_size)):
                target[uint64(plane) + k] = zero
            for i in range(k_h):
                for j in range(k_w):
                    tap = (((c * k_h + i) * k_w + j) * n + image) * out_plane_size
                    offset = j * dilation_w - pad_w  # the input column of output column 0
                    first = 0 if offset >= 0 else (-offset + stride_w - 1) // stride_w
                    last = min(out_w, (width - 1 - offset) // stride_w + 1) if width - 1 - offset >= 0 else 0
                    if last <= first:
                        continue
                    count = uint64(last - first)
                    for oh in range(out_h):
                        row = oh * stride_h + i * dilation_h - pad_h
                        if row < 0 or row >= height:
                            continue
                        to = uint64(plane + row * width + offset + first * stride_w)
                        start = uint64(tap + oh * out_w + first)
                        if stride_w == 1:
                            for q in range(count):
                                target[to + q] += source[start + q]
                        else:
                            for q in range(count):
                                target[to + q * column_step] += source[start + q]
