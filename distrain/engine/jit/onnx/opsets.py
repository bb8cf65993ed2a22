"""Which ONNX opset has what: the check every emitted node passes, and the error for an op with no converter.

The lowest opset of an ONNX operator is read from the `onnx` package's own schemas (the
first `since_version` of that operator), so this table never goes stale. What is written
by hand is only the other direction: for a distrain op or layer this exporter does not
convert, the ONNX operator that would express it (or None where ONNX has no single one),
so that the error can say how far ONNX is from the model and what to do.
"""
from __future__ import annotations

import functools

from .export_errors import OnnxExportError

MIN_OPSET = 11  # Clip, Pad and Range take their bounds as inputs from here on; older forms are not written

# distrain op or layer name -> the ONNX operator that has the same meaning (None: no single operator).
EQUIVALENTS = {
    "cumsum": "CumSum", "cumprod": None, "cummax": None, "cummin": None, "logcumsumexp": None,
    "sort": "TopK", "argsort": "TopK", "topk": "TopK", "kthvalue": "TopK", "msort": "TopK", "unique": "Unique",
    "pixel_shuffle": "DepthToSpace", "pixel_unshuffle": "SpaceToDepth", "PixelShuffle": "DepthToSpace",
    "PixelUnshuffle": "SpaceToDepth", "interpolate": "Resize", "upsample": "Resize", "Upsample": "Resize",
    "UpsamplingNearest2d": "Resize", "UpsamplingBilinear2d": "Resize", "einsum": "Einsum", "tril": "Trilu",
    "triu": "Trilu", "gather": "GatherElements", "take_along_dim": "GatherElements", "scatter": "ScatterElements",
    "scatter_add": "ScatterElements", "index_put": "ScatterND", "nonzero": "NonZero", "argwhere": "NonZero",
    "masked_select": "Compress", "one_hot": "OneHot", "roll": None, "cdist": None, "kron": None, "cross": None,
    "unfold": None, "Unfold": None, "median": None, "nanmedian": None, "histc": None, "bincount": None,
    "multinomial": "Multinomial", "bernoulli": "Bernoulli", "normal": "RandomNormalLike", "round": "Round",
    "det": "Det", "inverse": None, "index_select": "Gather", "masked_fill": "Where", "trace": None,
    "glu": None, "softshrink": "Shrink", "hardshrink": "Shrink", "Softshrink": "Shrink", "Hardshrink": "Shrink",
    "cross_entropy": "SoftmaxCrossEntropyLoss", "nll_loss": "NegativeLogLikelihoodLoss",
    "RNNCell": "RNN", "LSTMCell": "LSTM", "GRUCell": "GRU", "__setitem__": "ScatterND",
}


@functools.lru_cache(maxsize=None)
def first_opset(op_type):
    """The opset in which ONNX introduced `op_type` (None when the default domain has no such operator)."""
    import onnx.defs

    versions = [schema.since_version for schema in onnx.defs.get_all_schemas_with_history()
                if schema.name == op_type and schema.domain == ""]
    return min(versions) if versions else None


def check_opset(opset):
    """Refuse an opset this exporter cannot write or the installed onnx package does not know."""
    import onnx.defs

    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise OnnxExportError(f"export_onnx: opset must be an int from {MIN_OPSET} to {newest} (the newest the "
                              f"installed onnx package knows), got {opset!r}")


def require(op_type, opset, doing):
    """Raise unless `op_type` exists in `opset`; `doing` says which distrain op needed it (and its shapes)."""
    since = first_opset(op_type)
    if since is None or since > opset:
        raise OnnxExportError(f"{doing} needs the ONNX operator {op_type}, which ONNX has from opset {since}; this "
                              f"export asked for opset {opset}. Export with opset={since} or higher.")


def unsupported(op_name, doing, opset):
    """The error for a distrain op or layer that has no converter: what ONNX offers instead, and what to do."""
    equivalent = EQUIVALENTS.get(op_name)
    since = first_opset(equivalent) if equivalent else None
    if since is not None:
        onnx_side = (f"ONNX expresses it with {equivalent} from opset {since} (this export asked for opset "
                     f"{opset}), but distrain's exporter has no converter for it yet")
    else:
        onnx_side = "ONNX has no single operator for it"
    return OnnxExportError(f"{doing} cannot be exported to ONNX: {onnx_side}. Write this step with exportable ops "
                           f"(matmul, arithmetic, reshape/permute/cat, the nn layers), or compute it outside the "
                           f"exported model.")
