"""SMC particles split along "particles" on 8 simulated devices: collectives and resampling."""

from conftest import run_program

Z_LIMIT = 5.0


def test_sharded_particles_are_the_unsharded_particles():
    result = run_program("eight_devices.py", "smc")
    per_particle = "P(None, 'particles')"
    assert result["filter_specs"] == {
        "log_weights": per_particle,
        "particles": per_particle,
        "ancestors": per_particle,
        "final_carry": "P('particles',)",
        "ess": "P()",
        "log_marginal_likelihood": "P()",
    }
    # Global resampling draws the unsharded filter's ancestors among all particles, so the
    # particles, weights, ancestors and resampling decisions are bit-identical ...
    for field in ("log_weights", "ancestors", "resampled", "particles"):
        assert result[f"filter_{field}_identical"], field
    assert result["filter_resampling_steps"] >= 5  # resampling really happened
    # ... while the ESS and the evidence are sums across devices: equal to rounding.
    assert result["filter_ess_relative"] < 1e-5
    assert result["filter_lml_difference"] < 1e-4
    assert result["smoothing_difference"] < 1e-4
    # Tempered SMC: reweighting and MH rejuvenation per particle, global resampling. Each
    # particle's likelihood sums over a plate, which another per-device particle count may
    # vectorise differently: agreement to rounding, not bit for bit.
    assert result["tempered_resampled_identical"] and result["tempered_resampling_steps"] >= 1
    assert result["tempered_log_weights_relative"] < 1e-5
    assert result["tempered_mu_difference"] < 1e-5
    assert result["tempered_ess_relative"] < 1e-5
    assert result["tempered_lml_difference"] < 1e-4
    assert result["tempered_spec"] == "P('particles',)"
    assert result["is_log_weights_identical"] and result["is_spec"] == "P('particles',)"
    assert result["is_lml_difference"] < 1e-4
    # The collectives alone, on weights spread over 30 nats with -inf entries.
    assert result["collective_lml_relative"] < 1e-5
    assert result["collective_ess_relative"] < 1e-4
    assert "num_particles=100 is not divisible" in result["indivisible_particles_error"]


def test_island_resampling_keeps_the_evidence_unbiased_and_the_mutant_is_rejected():
    result = run_program("eight_devices.py", "islands")
    # mean of Z_hat / Z over 64 replications, as a z-score against 1 (Kalman filter's Z).
    assert abs(result["evidence_z_islands"]) < Z_LIMIT
    assert result["resampling_steps_islands"] >= 5
    # Resetting an island's log weights to 0 after resampling forgets its mass: rejected.
    assert abs(result["evidence_z_mutant"]) > Z_LIMIT
