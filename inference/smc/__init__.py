"""Sequential Monte Carlo on generative functions.

Importance sampling and sampling importance resampling (``importance_sampling``,
``sampling_importance_resampling``), particle filters over ``Scan`` step kernels
(``bootstrap_filter``, ``guided_filter``), SMC samplers by likelihood tempering with MCMC
rejuvenation (``tempered_smc``, ``adaptive_tempered_smc``, on the ``Tempered`` target), and
the resampling schemes they share. Every algorithm interprets the model through the generative
function interface, and returns weighted particles with a log marginal-likelihood estimate.
"""

from inference.smc._importance import importance_sampling as importance_sampling
from inference.smc._importance import (
    sampling_importance_resampling as sampling_importance_resampling,
)
from inference.smc._particle_filter import ParticleFilterResult as ParticleFilterResult
from inference.smc._particle_filter import bootstrap_filter as bootstrap_filter
from inference.smc._particle_filter import guided_filter as guided_filter
from inference.smc._particles import WeightedParticles as WeightedParticles
from inference.smc._resampling import ResamplingOutcome as ResamplingOutcome
from inference.smc._resampling import ResamplingScheme as ResamplingScheme
from inference.smc._resampling import effective_sample_size as effective_sample_size
from inference.smc._resampling import log_mean_exp as log_mean_exp
from inference.smc._resampling import multinomial as multinomial
from inference.smc._resampling import resample_if_low_ess as resample_if_low_ess
from inference.smc._resampling import residual as residual
from inference.smc._resampling import stratified as stratified
from inference.smc._resampling import systematic as systematic
from inference.smc._tempered_target import Tempered as Tempered
from inference.smc._tempered_target import TemperedTrace as TemperedTrace
from inference.smc._tempering import Rejuvenation as Rejuvenation
from inference.smc._tempering import TemperedSMCResult as TemperedSMCResult
from inference.smc._tempering import adaptive_tempered_smc as adaptive_tempered_smc
from inference.smc._tempering import next_inverse_temperature as next_inverse_temperature
from inference.smc._tempering import tempered_smc as tempered_smc
