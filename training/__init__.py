"""torch models (the MUMA ranker and baselines), training, evaluation and the bandit policy."""
