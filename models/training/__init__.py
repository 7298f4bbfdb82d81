"""Training classifiers: one MAP training loop shared by every model and baseline."""

from models.training._batch import apply_to_batch as apply_to_batch
from models.training._fixed import Fixed as Fixed
from models.training._fixed import trainable as trainable
from models.training._loop import TrainResult as TrainResult
from models.training._loop import log_likelihood as log_likelihood
from models.training._loop import train as train
