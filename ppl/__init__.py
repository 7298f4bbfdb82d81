"""ppl: generative functions on JAX.

Models are Python functions decorated with ``@gen``; every inference operation is an
interpretation of them through the generative function interface (``simulate``, ``assess``,
``generate``, ``update``, ``regenerate``).
"""

from ppl._choicemap import ChoiceMap as ChoiceMap
from ppl._context import debug as debug
from ppl._context import validation as validation
from ppl._distribution import Distribution as Distribution
from ppl._distribution import DistributionTrace as DistributionTrace
from ppl._distribution import from_numpyro as from_numpyro
from ppl._distributions import bernoulli as bernoulli
from ppl._distributions import beta as beta
from ppl._distributions import binomial as binomial
from ppl._distributions import categorical as categorical
from ppl._distributions import cauchy as cauchy
from ppl._distributions import dirichlet as dirichlet
from ppl._distributions import exponential as exponential
from ppl._distributions import flip as flip
from ppl._distributions import gamma as gamma
from ppl._distributions import geometric as geometric
from ppl._distributions import half_normal as half_normal
from ppl._distributions import inverse_gamma as inverse_gamma
from ppl._distributions import laplace as laplace
from ppl._distributions import log_normal as log_normal
from ppl._distributions import mv_normal as mv_normal
from ppl._distributions import mv_normal_diag as mv_normal_diag
from ppl._distributions import negative_binomial as negative_binomial
from ppl._distributions import normal as normal
from ppl._distributions import poisson as poisson
from ppl._distributions import student_t as student_t
from ppl._distributions import uniform as uniform
from ppl._errors import AddressError as AddressError
from ppl._errors import GenerativeContextError as GenerativeContextError
from ppl._errors import NonFiniteScoreError as NonFiniteScoreError
from ppl._interface import GenerativeFunction as GenerativeFunction
from ppl._interface import Trace as Trace
from ppl._marginal import EstimatedTrace as EstimatedTrace
from ppl._marginal import Marginal as Marginal
from ppl._marginal import Normalize as Normalize
from ppl._marginal import marginal as marginal
from ppl._marginal import normalize as normalize
from ppl._selection import Selection as Selection
from ppl._selection import select as select
from ppl._static import StaticGenerativeFunction as StaticGenerativeFunction
from ppl._static import StaticTrace as StaticTrace
from ppl._static import gen as gen
from ppl.adev import Expectation as Expectation
from ppl.adev import expectation as expectation
from ppl.combinators import Cond as Cond
from ppl.combinators import Mixture as Mixture
from ppl.combinators import Scan as Scan
from ppl.combinators import Switch as Switch
from ppl.combinators import Vmap as Vmap

__version__ = "0.1.0"
