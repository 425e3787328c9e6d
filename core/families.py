"""The model families a training can use: one definition for the command line and the training.

This module imports nothing heavy on purpose: ``churnops train --help`` and ``churnops tune --help``
build their ``--family`` choices from it before sklearn is imported. :mod:`core.train` maps each
family to its estimator and hyper-parameters.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

ModelFamily = Literal["hgb", "rf", "logreg"]
#: Every family, in the order ``--help`` lists them.
MODEL_FAMILIES: Final[tuple[ModelFamily, ...]] = get_args(ModelFamily)
#: The family trained when none is named (HistGradientBoosting).
DEFAULT_FAMILY: Final[ModelFamily] = "hgb"
