"""models: Bayesian deep-learning models built on ppl and inference (see the docs).

Subpackages: ``models.sngp`` (SNGP), ``models.gnn_sngp`` (GNN-SNGP), ``models.last_layer``
(Bayesian last layers as generative functions), ``models.baselines``, ``models.metrics``
(reliability metrics) and ``models.training`` (the shared training loop).
"""
