"""Plain values between ranks: msgpack restricted to a fixed set of types, never pickle.

`Communicator.allgather_object` exchanges small Python values between ranks (the
parameter-signature check of DistributedDataParallel). Those bytes come from another
process, and on a parameter server from whoever joined as that rank: unpickling them
would run whatever code they name. msgpack decodes data only, and this module fixes
which data travels:

    None, bool, int (64-bit), float, str, bytes, list, tuple, dict with str keys

NumPy scalars (numpy.float32(1.5), numpy.int64(3), numpy.bool_(True)) become the Python
number they hold. Tuples stay tuples (a msgpack extension type wrapping the list of
their items), so a value comes back equal to what was sent. Anything else (a set, an
array, an object) raises `PlainValueError` naming where in the value it sits and its
type, on the sending rank, before anything is sent; bytes that do not decode to such a
value raise `PlainValueError` on the receiving rank, naming the sender.
"""
from __future__ import annotations

import msgpack
import numpy

from ..errors import DistrainError

_TUPLE = 1  # msgpack extension code: the packed list of a tuple's items
MAX_DEPTH = 64  # nesting deeper than this is refused (it is a cycle, or not a "small plain value")
PLAIN_TYPES_TEXT = ("None, bool, int (64-bit), float, str, bytes, and lists, tuples and dicts with str keys of "
                    "them; NumPy scalars become Python numbers")


class PlainValueError(DistrainError, TypeError):
    """A value that cannot travel between ranks as plain data, or bytes that are not such a value."""


def encode(value, what="the value") -> bytes:
    """`value` as msgpack bytes; PlainValueError naming the offending part of `what` if it is not plain."""
    return msgpack.packb(_plain(value, what, 0), use_bin_type=True)


def decode(data, sender="another rank"):
    """The value that `encode` turned into `data`; PlainValueError naming `sender` if `data` is anything else."""
    try:
        value = _unpack(bytes(data))
        _check_decoded(value, 0)
    except PlainValueError as error:
        raise PlainValueError(f"{sender} sent a value that is not plain data ({error}); is every rank running "
                              "the same distrain, and is it a rank of this job?") from None
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as error:
        raise PlainValueError(f"{sender} sent bytes that are not a msgpack-encoded plain value "
                              f"({type(error).__name__}: {error}); is every rank running the same distrain, and is "
                              "it a rank of this job?") from None
    return value


def _plain(value, where, depth):
    """`value` in msgpack's own types (tuples as extension values), or PlainValueError naming `where`."""
    if depth > MAX_DEPTH:
        raise PlainValueError(f"{where} is nested more than {MAX_DEPTH} levels deep (does it contain itself?)")
    if isinstance(value, numpy.generic):  # before float: numpy.float64 is a float subclass
        item = value.item()
        if type(item) not in (bool, int, float, str, bytes):
            raise _not_plain(value, where)
        return _plain(item, where, depth)
    kind = type(value)
    if value is None or kind in (bool, str, bytes, float):
        return value
    if kind is int:
        if not -(1 << 63) <= value < 1 << 64:
            raise PlainValueError(f"{where} is an int that does not fit in 64 bits ({value}); send it as a str")
        return value
    if kind is list:
        return [_plain(item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value)]
    if kind is tuple:
        items = [_plain(item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value)]
        return msgpack.ExtType(_TUPLE, msgpack.packb(items, use_bin_type=True))
    if kind is dict:
        encoded = {}
        for key, item in value.items():
            if type(key) is not str:
                raise PlainValueError(f"{where} has the key {key!r} of type {type(key).__name__}; dict keys must "
                                      "be str to travel between ranks")
            encoded[key] = _plain(item, f"{where}[{key!r}]", depth + 1)
        return encoded
    raise _not_plain(value, where)


def _not_plain(value, where):
    kind = type(value)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    hint = " (send arrays with allgather)" if hasattr(value, "__array__") and not isinstance(value, numpy.generic) \
        else ""
    return PlainValueError(f"{where} is a {name}, which cannot travel between ranks{hint}; allgather_object "
                           f"takes only {PLAIN_TYPES_TEXT}")


def _unpack(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_extension)


def _extension(code, data):
    if code != _TUPLE:
        raise PlainValueError(f"an unknown msgpack extension type {code}")
    items = _unpack(data)
    if type(items) is not list:
        raise PlainValueError("a tuple whose items are not a list")
    return tuple(items)


def _check_decoded(value, depth):
    """Raise unless every part of a decoded value is one of the plain types (msgpack decodes some others)."""
    if depth > MAX_DEPTH:
        raise PlainValueError(f"nesting deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if value is None or kind in (bool, int, float, str, bytes):
        return
    if kind in (list, tuple):
        for item in value:
            _check_decoded(item, depth + 1)
        return
    if kind is dict and all(type(key) is str for key in value):
        for item in value.values():
            _check_decoded(item, depth + 1)
        return
    raise PlainValueError(f"a value of type {kind.__name__}")
