"""The MCMC example scripts run with small arguments and give sensible answers."""

import importlib.util
import pathlib

import numpy as np

EXAMPLES = pathlib.Path(__file__).parents[2] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mixture_gibbs_recovers_the_component_means():
    example = load("mixture_gibbs")
    estimate = example.main(num_points=60, num_samples=60, num_chains=2)
    np.testing.assert_allclose(estimate, np.sort(example.TRUE_MEANS), atol=1.0)


def test_quickstart_runs():
    load("quickstart").main(particles=2000)
