"""The one error hierarchy of model-monitor.

Every error we raise on purpose is a ``MonitorError``. The split that matters to a
caller is whether trying again can help::

    MonitorError
    ├── TransientError          retry with backoff: the world may get better
    │   ├── BrokerUnavailable   Kafka cannot be reached or timed out
    │   ├── StoreUnavailable    the database cannot be reached or is locked
    │   └── PublishFailed       the retraining queue did not acknowledge
    └── FatalError              retrying cannot help: fix something, then restart
        ├── ConfigError         bad or unknown configuration
        ├── StartupError        the service could not start (wraps the cause)
        ├── BrokerRejected      Kafka refused a record for good (too large, not authorised)
        ├── StoreFailed         the database refused an operation (not a lost connection)
        ├── StoreSchemaError    the database is not one of ours
        ├── InputError          a file we were asked to read cannot be read
        └── OutputError         a file or folder we were asked to write cannot be written

Bad *input* is not an exception in the hot path: ``collectors.decode`` returns a
reason per message and the message goes to the dead-letter topic.
"""

from __future__ import annotations


class MonitorError(Exception):
    """Base of every error model-monitor raises on purpose."""


class TransientError(MonitorError):
    """An error that may go away by itself: retry with backoff."""


class FatalError(MonitorError):
    """An error that retrying cannot fix."""


class BrokerUnavailable(TransientError):
    """Kafka could not be reached, or did not answer in time."""


class StoreUnavailable(TransientError):
    """The flagged-sample store could not be reached, or was busy."""


class PublishFailed(TransientError):
    """The retraining queue (topic or webhook) did not acknowledge a push."""


class ConfigError(FatalError):
    """The configuration is invalid; the message names the key and what to fix."""


class StartupError(FatalError):
    """The service could not start; the message says what to fix."""


class BrokerRejected(FatalError):
    """Kafka refused records for a reason retrying cannot fix."""


class StoreFailed(FatalError):
    """The store refused an operation for a reason retrying cannot fix."""


class StoreSchemaError(FatalError):
    """The store's database holds tables that are not ours, or an unknown version."""


class InputError(FatalError):
    """A file we were asked to read (events, a training set) cannot be read."""


class OutputError(FatalError):
    """A file or folder we were asked to write (a dataset, a report) cannot be written."""
