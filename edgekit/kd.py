"""The knowledge-distillation loss (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network")."""

from __future__ import annotations

import math

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


# Above this share of the maximum entropy (log of the class count) the softened teacher says little more than
# "any class": measured on the CIFAR-10 teacher (trained with label smoothing 0.2) at T=4, 97.5 % with a mean top
# probability of 0.21, and KD then trained a student no better than the labels alone (benchmarks/distill_vs_labels.py).
FLAT_TARGETS = 0.9


def soft_target_stats(teacher_logits: torch.Tensor, temperature: float) -> dict:
    """How informative the softened teacher is: mean top probability and mean entropy as a share of the maximum,
    of softmax(logits / T) over a sample of images; `flat` when the entropy share passes FLAT_TARGETS."""
    p = F.softmax(teacher_logits.float() / temperature, dim=1)  # (N, classes)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(1).mean().item()
    share = entropy / math.log(p.shape[1])
    return {"temperature": temperature, "mean_top_probability": round(p.max(1).values.mean().item(), 4),
            "entropy_share": round(share, 4), "flat": share > FLAT_TARGETS, "images": int(p.shape[0])}
