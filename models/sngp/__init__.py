"""SNGP: distance-aware uncertainty from a deterministic network (Liu et al., 2020).

Spectrally normalized residual layers keep distances between inputs in the hidden
representation; a random-feature Gaussian-process output layer with a Laplace posterior
turns distance from the training data into predictive variance.
"""

from models.sngp._classifier import SNGPClassifier as SNGPClassifier
from models.sngp._final_epoch import MomentumLaplace as MomentumLaplace
from models.sngp._laplace import LaplacePrecision as LaplacePrecision
from models.sngp._laplace import LowRankCovariance as LowRankCovariance
from models.sngp._laplace import likelihood_curvature as likelihood_curvature
from models.sngp._laplace import predictive_variance as predictive_variance
from models.sngp._mean_field import mean_field_logits as mean_field_logits
from models.sngp._posterior import Prediction as Prediction
from models.sngp._posterior import fit_laplace as fit_laplace
from models.sngp._posterior import predict as predict
from models.sngp._random_features import (
    RandomFeatureGaussianProcess as RandomFeatureGaussianProcess,
)
from models.sngp._residual import ResidualNetwork as ResidualNetwork
from models.sngp._spectral_norm import SpectralNormalization as SpectralNormalization
from models.sngp._spectral_norm import power_iteration as power_iteration
