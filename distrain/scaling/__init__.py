"""distrain.scaling: how data-parallel training scales beyond the machines at hand, by the alpha-beta model.

    python -m distrain.scaling --help

costs.py prices one allreduce (ring, recursive halving-doubling) or parameter-server exchange;
overlap.py overlaps the buckets' exchanges with backward; model.py turns a measured step
(measure.py) into step time and efficiency for N ranks; fit.py reads alpha and beta off
measured allreduces.
"""
from .costs import Link, halving_doubling_allreduce, parameter_server, ring_allreduce
from .model import Prediction, Workload, predict, table

__all__ = ["Link", "Prediction", "Workload", "halving_doubling_allreduce", "parameter_server", "predict",
           "ring_allreduce", "table"]
