"""The knowledge-distillation loss (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network")."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor | None,
            temperature: float, alpha: float) -> torch.Tensor:
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, labels); logits are (N, classes).

    The soft term is the KL divergence from the teacher's softened distribution to the student's: a high T
    flattens both, so the student also learns how the teacher ranks the wrong classes ("dark knowledge").
    Its gradient with respect to the student's logits scales as 1/T^2: 1/T from differentiating through s/T,
    and another 1/T because softened probabilities differ by only about (s - t) / (classes * T) (Hinton et
    al., section 2.1). Without the T^2 factor, raising T would silently shrink the soft term against the hard
    one; with it, alpha means the same mix at any temperature.

    labels=None (unlabelled data): the teacher's soft targets alone. alpha=0: labels alone (no teacher needed).
    """
    if alpha == 0:
        return F.cross_entropy(student, labels)
    soft = F.kl_div(F.log_softmax(student / temperature, dim=1), F.log_softmax(teacher / temperature, dim=1),
                    reduction="batchmean", log_target=True) * temperature**2  # mean over the batch: (,)
    if labels is None:
        return soft
    return alpha * soft + (1 - alpha) * F.cross_entropy(student, labels)
