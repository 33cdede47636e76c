"""Plotting: training curves and joint embeddings, with scanpy's ``ax``/``show``/``save`` conventions."""

from ._embedding import joint_embedding
from ._training import loss_curves

__all__ = ["joint_embedding", "loss_curves"]
