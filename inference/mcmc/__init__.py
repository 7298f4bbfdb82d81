"""MCMC on traces: kernels (``init``/``step`` pairs whose state is the trace)."""

from inference.mcmc._adaptation import window_adaptation as window_adaptation
from inference.mcmc._gibbs import GibbsInfo as GibbsInfo
from inference.mcmc._gibbs import gibbs as gibbs
from inference.mcmc._gradient import hmc as hmc
from inference.mcmc._gradient import mala as mala
from inference.mcmc._gradient import nuts as nuts
from inference.mcmc._kernel import Kernel as Kernel
from inference.mcmc._kernel import chain as chain
from inference.mcmc._kernel import cycle as cycle
from inference.mcmc._mh import MHInfo as MHInfo
from inference.mcmc._mh import mh as mh
from inference.mcmc._mh import mh_proposal as mh_proposal
from inference.mcmc._predictive import posterior_choices as posterior_choices
from inference.mcmc._predictive import posterior_predictive as posterior_predictive
from inference.mcmc._predictive import predictive as predictive
from inference.mcmc._run import run as run
from inference.mcmc._run import summary as summary
from inference.mcmc._unconstrained import Unconstrained as Unconstrained
