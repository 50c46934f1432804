"""Pearson's chi-square goodness-of-fit test, for tests of sampling distributions."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch


def chi_square_p_value(counts: npt.NDArray[np.int64], probabilities: npt.NDArray[np.float64]) -> float:
    """Pearson's goodness-of-fit test: P(chi2 >= statistic) with len(counts) - 1 degrees of freedom."""
    expected = counts.sum() * probabilities
    statistic = float(((counts - expected) ** 2 / expected).sum())
    degrees = len(counts) - 1
    return float(torch.special.gammaincc(torch.tensor(degrees / 2.0), torch.tensor(statistic / 2.0)))
