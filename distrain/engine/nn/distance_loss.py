"""Loss modules over ops/distance_losses.py: SmoothL1Loss, HuberLoss, KLDivLoss, CosineEmbeddingLoss."""
from __future__ import annotations

from ...errors import ArgumentError
from ..ops import distance_losses
from ..ops.losses import REDUCTIONS, _legacy_reduction
from .loss import _Loss
from .module import Module


class SmoothL1Loss(_Loss):
    """Squared error below `beta`, absolute error (minus beta/2) above: robust to outliers, smooth at 0."""

    def __init__(self, size_average=None, reduce=None, reduction="mean", beta=1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input, target):
        return distance_losses.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """Squared error below `delta`, delta-scaled absolute error above (smooth_l1 times delta)."""

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction=reduction)
        self.delta = delta

    def forward(self, input, target):
        return distance_losses.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class KLDivLoss(Module):
    """KL divergence of the prediction (log-probabilities) from the target; use reduction='batchmean'."""

    def __init__(self, size_average=None, reduce=None, reduction="mean", log_target=False):
        super().__init__()
        self.reduction = _legacy_reduction(size_average, reduce, reduction)
        if self.reduction not in REDUCTIONS + ("batchmean",):
            raise ArgumentError(f"KLDivLoss: reduction must be one of {REDUCTIONS + ('batchmean',)}, "
                                f"got {self.reduction!r}")
        self.log_target = log_target

    def forward(self, input, target):
        return distance_losses.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class CosineEmbeddingLoss(_Loss):
    """Pull pairs with target 1 to cosine 1, push pairs with target -1 below cosine `margin`."""

    def __init__(self, margin=0.0, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def forward(self, input1, input2, target):
        return distance_losses.cosine_embedding_loss(input1, input2, target, self.margin, reduction=self.reduction)
