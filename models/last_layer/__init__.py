"""Bayesian last layers: a linear classifier over fixed features as a generative function,
with Laplace and variational posteriors to compare."""

from models.last_layer._laplace import laplace_last_layer as laplace_last_layer
from models.last_layer._model import GaussianLastLayer as GaussianLastLayer
from models.last_layer._model import bayesian_last_layer as bayesian_last_layer
from models.last_layer._variational import FullRankGaussian as FullRankGaussian
from models.last_layer._variational import MeanFieldGaussian as MeanFieldGaussian
from models.last_layer._variational import (
    fit_variational_last_layer as fit_variational_last_layer,
)
