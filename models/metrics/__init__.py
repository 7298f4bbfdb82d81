"""Reliability metrics for probabilistic classifiers, as pure JAX functions.

Predictions are ``[N, K]`` class probabilities and labels ``[N]`` integers. Calibration
(``expected_calibration_error``), proper scores (``negative_log_likelihood``,
``brier_score``), out-of-distribution detection from an uncertainty score (``ood_auroc``,
``ood_auprc``) and selective prediction (``accuracy_coverage_curve``). Shapes are checked
when a function is traced and label ranges whenever the labels are concrete arrays.
"""

from models.metrics._calibration import EqualMassBins as EqualMassBins
from models.metrics._calibration import EqualWidthBins as EqualWidthBins
from models.metrics._calibration import expected_calibration_error as expected_calibration_error
from models.metrics._classification import accuracy as accuracy
from models.metrics._classification import brier_score as brier_score
from models.metrics._classification import negative_log_likelihood as negative_log_likelihood
from models.metrics._ood import ood_auprc as ood_auprc
from models.metrics._ood import ood_auroc as ood_auroc
from models.metrics._scores import max_probability_uncertainty as max_probability_uncertainty
from models.metrics._scores import predictive_entropy as predictive_entropy
from models.metrics._selective import AccuracyCoverage as AccuracyCoverage
from models.metrics._selective import accuracy_coverage_curve as accuracy_coverage_curve
from models.metrics._selective import (
    area_under_accuracy_coverage as area_under_accuracy_coverage,
)
