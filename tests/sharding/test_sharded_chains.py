"""MCMC chains split along "chains" on 8 simulated devices, against the run on one device."""

from conftest import run_program

Z_LIMIT = 5.0


def test_sharded_chains_are_the_unsharded_chains():
    result = run_program("eight_devices.py", "mcmc")
    # Each device runs its block of 2 chains; the kept draws come back split along "chains".
    assert result["fetched_specs"] == ["P('chains',)"]
    # A kernel with given parameters (here NUTS, a dynamic-length kernel) gives bit-identical
    # draws: every chain runs the same program with the same key as on one device.
    assert result["nuts_fixed_identical"]
    assert result["nuts_fixed_resumed_identical"]  # checkpointed, interrupted, resumed
    assert abs(result["nuts_fixed_single_z"]) < Z_LIMIT
    # Window adaptation rounds differently when compiled for 8 devices and the chains amplify
    # it, so the adapted run is checked against the exact posterior mean instead.
    assert abs(result["nuts_adapted_sharded_z"]) < Z_LIMIT
    assert (
        "num_chains=12 is not divisible by the 8 devices of mesh axis 'chains'"
        in (result["indivisible_chains_error"])
    )
