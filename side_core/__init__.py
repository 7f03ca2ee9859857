"""SIDE Explorer engine: Surrogate condItional Data Extraction from unconditional diffusion models.

Stages (one module each): models, data, sampling, embed, cluster, classifier, neighbours, metrics,
store; ``pipeline`` runs them in order and ``cli`` exposes them as ``python -m side_core``.
"""

__version__ = "0.1.0"
