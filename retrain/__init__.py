"""Retraining: the flagged-sample store, the queue publishers, the triggers."""
