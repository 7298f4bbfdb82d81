"""GNN-SNGP: distance-aware uncertainty for graph classification (Han et al., 2021).

Padded graphs, message passing with ``jax.ops.segment_sum`` and spectrally normalized
layers, SNGP's Gaussian-process output layer, and a synthetic molecular benchmark with
distribution shift.
"""

from models.gnn_sngp._classifier import GNNClassifier as GNNClassifier
from models.gnn_sngp._classifier import GNNSNGPClassifier as GNNSNGPClassifier
from models.gnn_sngp._classifier import GraphNetwork as GraphNetwork
from models.gnn_sngp._graphs import Graph as Graph
from models.gnn_sngp._graphs import pad_graphs as pad_graphs
from models.gnn_sngp._message_passing import MessagePassingLayer as MessagePassingLayer
from models.gnn_sngp._message_passing import mean_neighbours as mean_neighbours
from models.gnn_sngp._molecules import ATOMS as ATOMS
from models.gnn_sngp._molecules import Molecules as Molecules
from models.gnn_sngp._molecules import synthetic_molecules as synthetic_molecules
