"""The baselines SNGP is compared with, trained by the same ``models.training.train``:
a deterministic network of the same architecture, MC dropout, a deep ensemble and a
mean-field variational Bayesian last layer (``inference.vi``)."""

from models.baselines._deterministic import DeterministicClassifier as DeterministicClassifier
from models.baselines._deterministic import softmax_probabilities as softmax_probabilities
from models.baselines._ensemble import ensemble_probabilities as ensemble_probabilities
from models.baselines._mc_dropout import mc_dropout_probabilities as mc_dropout_probabilities
from models.baselines._variational_last_layer import (
    VariationalLastLayer as VariationalLastLayer,
)
from models.baselines._variational_last_layer import (
    fit_variational_last_layer_baseline as fit_variational_last_layer_baseline,
)
