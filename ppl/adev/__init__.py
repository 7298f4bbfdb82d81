"""ADEV: unbiased gradients of expected values, with a gradient strategy per random choice.

``@expectation`` turns a program that samples into an object with ``estimate`` and
``grad_estimate``. Strategies (``reparam``, ``reinforce`` with baselines, ``enum``, ``mvd``)
are chosen in the program (``normal.reinforce()``) or by address from outside
(``Expectation.with_estimators``); any mix composes into one unbiased estimator.
"""

from ppl.adev._estimators import Accumulators as Accumulators
from ppl.adev._estimators import Baseline as Baseline
from ppl.adev._estimators import Estimator as Estimator
from ppl.adev._estimators import constant as constant
from ppl.adev._estimators import enum as enum
from ppl.adev._estimators import learned as learned
from ppl.adev._estimators import leave_one_out as leave_one_out
from ppl.adev._estimators import mvd as mvd
from ppl.adev._estimators import reinforce as reinforce
from ppl.adev._estimators import reparam as reparam
from ppl.adev._estimators import running_mean as running_mean
from ppl.adev._expectation import Expectation as Expectation
from ppl.adev._expectation import expectation as expectation
