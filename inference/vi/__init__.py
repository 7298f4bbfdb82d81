"""Variational inference: maximise objectives written as ``@expectation`` programs."""

from inference.vi._fit import FitResult as FitResult
from inference.vi._fit import fit as fit
