"""Retrieval: exact nearest neighbours (faiss) and benign ranking metrics."""

from catride_core.retrieval.knn import nearest_neighbors
from catride_core.retrieval.metrics import nmi, rank_metrics, recall_at_1, retrieval_metrics

__all__ = ["nearest_neighbors", "nmi", "rank_metrics", "recall_at_1", "retrieval_metrics"]
