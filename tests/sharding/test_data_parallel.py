"""Data-parallel vi.fit on 8 simulated devices (batch split along "data"), against one device."""

from conftest import run_program


def test_data_parallel_fit_is_the_single_device_fit():
    result = run_program("eight_devices.py", "vi")
    # Inside the objective each device sees 2 of the 16 rows of every batch.
    assert result["single_batch_shard_shapes"] == [[16, 3]]
    assert result["data_parallel_batch_shard_shapes"] == [[2, 3]]
    assert result["weight_update_batch_shard_shapes"] == [[2, 3]]
    for name in ("data_parallel", "weight_update"):
        # The batch sums are added in another order: equal to float32 rounding.
        assert result[f"{name}_loss_relative"] < 1e-5, name
        assert result[f"{name}_param_difference"] < 1e-5, name
        assert result[f"{name}_param_specs"] == ["P()"], name  # parameters copied
    assert result["data_parallel_moment_specs"] == ["P()"]
    # Weight-update sharding splits Adam's moments along their first axis divisible by 8.
    assert result["weight_update_moment_specs"] == {
        "w1": {"loc": "P(None, 'data')", "log_scale": "P(None, 'data')"},
        "w2": {"loc": "P('data',)", "log_scale": "P('data',)"},
    }
    assert "batch_size=12 is not divisible by the 8 devices" in result["indivisible_batch_error"]
