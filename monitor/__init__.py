"""model-monitor: the daemon, its configuration, metrics and runners.

Importing this package does nothing but define the version: no global registry, no
environment read, no threads.
"""

__version__ = "0.1.0"
