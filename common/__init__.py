"""What every package of model-monitor shares: the error hierarchy (``common.errors``).

Every package may import this one; it imports nothing of ours, so it can sit under
all of them without a cycle. Only what all of them need belongs here.
"""
