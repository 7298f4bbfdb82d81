"""Two processes on localhost form one JAX cluster (gloo collectives on CPU), 4 devices each.

The sharded particle filter, data-parallel ``vi.fit`` and ``mcmc.run`` over the global mesh of
8 devices give, on every process, the results of the unsharded run on one local device.
"""

from conftest import run_cluster


def test_two_process_cluster_runs_sharded_inference():
    results = run_cluster("two_processes.py", num_processes=2, devices_per_process=4)
    for index, result in enumerate(results):
        assert result["process_index"] == index
        assert result["process_count"] == 2
        assert result["device_count"] == 8 and result["local_device_count"] == 4
        # The particles really span both processes.
        assert not result["filter_fully_addressable"]
        assert result["filter_log_weights_identical"] and result["filter_ancestors_identical"]
        assert abs(result["filter_lml"] - result["filter_lml_single"]) < 1e-4
        assert result["vi_loss_relative"] < 1e-5
        assert abs(result["vi_loc"] - result["vi_loc_single"]) < 1e-5
        assert result["mcmc_identical"] and result["mcmc_shape"] == [8, 20]
    assert results[0]["filter_lml"] == results[1]["filter_lml"]
