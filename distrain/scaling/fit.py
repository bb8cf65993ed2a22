"""Alpha and beta from measured allreduce times: a straight line through (bytes, seconds).

An allreduce of n bytes on p ranks takes a + b n seconds (costs.py), where for the ring
a = 2(p-1) alpha and b = 2(p-1)/p beta (+ (p-1)/p gamma, which a fit cannot tell from beta:
it is folded in, as the measured runs fold it in too). The line is fitted to relative errors
(each point weighted by 1/t), since the sizes span four orders of magnitude and an absolute
fit would let the largest messages alone decide alpha.
"""
from __future__ import annotations

import numpy

from .costs import Link


def line(sizes, seconds):
    """(a, b): t = a + b n, least squares on relative errors; ValueError for fewer than two sizes or a line that
    goes through negative time."""
    sizes, seconds = numpy.asarray(sizes, dtype=numpy.float64), numpy.asarray(seconds, dtype=numpy.float64)
    if sizes.size < 2 or len(set(sizes.tolist())) < 2:
        raise ValueError("fitting alpha and beta needs times for at least two message sizes")
    weights = 1.0 / seconds
    design = numpy.stack([numpy.ones_like(sizes), sizes], axis=1) * weights[:, None]
    (a, b), *_ = numpy.linalg.lstsq(design, seconds * weights, rcond=None)
    if b <= 0:
        raise ValueError(f"the measured times do not grow with the message size (slope {b:.3g} s/byte): too noisy "
                         "to fit; measure larger messages or more repeats")
    return max(float(a), 0.0), float(b)


def ring_link(sizes, seconds, ranks):
    """The Link whose ring allreduce on `ranks` ranks best fits the measured times."""
    p = int(ranks)
    if p < 2:
        raise ValueError("a link is measured between at least 2 ranks")
    a, b = line(sizes, seconds)
    return Link(alpha=a / (2 * (p - 1)), beta=b * p / (2 * (p - 1)))
