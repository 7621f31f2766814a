"""Collectors: the event contract, decoding and validation, PII redaction, the join.

Nothing here imports the rest of model-monitor but ``common`` (the errors).
"""
