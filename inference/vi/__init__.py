"""Variational inference: maximise objectives written as ``@expectation`` programs."""

from inference.vi._fit import FitResult as FitResult
from inference.vi._fit import fit as fit
from inference.vi._objectives import diwhvi as diwhvi
from inference.vi._objectives import elbo as elbo
from inference.vi._objectives import forward_kl as forward_kl
from inference.vi._objectives import hvi as hvi
from inference.vi._objectives import iwae as iwae
from inference.vi._objectives import iwhvi as iwhvi
from inference.vi._objectives import rws_sleep_phi as rws_sleep_phi
from inference.vi._objectives import rws_wake_phi as rws_wake_phi
from inference.vi._objectives import vimco as vimco
