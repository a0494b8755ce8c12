"""torch model code: MUMA's blocks (embeddings, encoder, attention, graph, towers, heads), the
full :class:`~training.model.muma.MumaRanker`, its baselines and their typed configs.

Import from the submodules; this package imports nothing at import time.
"""
