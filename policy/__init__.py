"""Policies that turn ranker scores into slates, and the off-policy estimators that judge them."""
