"""Sharding: chains, particles and data batches split across the devices of a mesh.

A mesh (``make_mesh``) names axes of devices: MCMC chains are split along ``"chains"``
(``inference.mcmc.run(..., mesh=mesh)``), SMC particles along ``"particles"``
(``importance_sampling``, ``bootstrap_filter``, ``guided_filter`` and ``tempered_smc``
here), and data batches along ``"data"`` (``inference.vi.fit(...,
sharding=DataParallel(mesh))``). The same code runs on one device, on simulated CPU devices,
on accelerators, and on a global mesh of several processes after
``jax.distributed.initialize``.
"""

from inference.sharding._chains import ChainPlacement as ChainPlacement
from inference.sharding._collectives import effective_sample_size as effective_sample_size
from inference.sharding._collectives import log_mean_exp as log_mean_exp
from inference.sharding._data_parallel import DataParallel as DataParallel
from inference.sharding._data_parallel import ShardedWeightUpdate as ShardedWeightUpdate
from inference.sharding._mesh import gather as gather
from inference.sharding._mesh import make_mesh as make_mesh
from inference.sharding._mesh import replicate as replicate
from inference.sharding._mesh import shard as shard
from inference.sharding._populations import Islands as Islands
from inference.sharding._smc import bootstrap_filter as bootstrap_filter
from inference.sharding._smc import guided_filter as guided_filter
from inference.sharding._smc import importance_sampling as importance_sampling
from inference.sharding._smc import tempered_smc as tempered_smc
