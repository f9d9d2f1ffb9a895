"""Training: patch sampling, preprocessed case cache and batch producer, the plain training loop,
checkpoints, schedules and the training log."""

from medseg.training.config import TrainingConfig
from medseg.training.loop import TrainingResult, train

__all__ = ["TrainingConfig", "TrainingResult", "train"]
