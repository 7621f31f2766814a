"""Exit codes of the ``monitor`` command (a module of its own so ``--help`` imports nothing heavy)."""

EXIT_OK = 0
#: A failure while running, or a demo fault that was not detected.
EXIT_FAILURE = 1
#: Bad usage or configuration.
EXIT_CONFIG = 2
#: Start-up failed: broker or store unreachable.
EXIT_STARTUP = 3
#: Stopped by Ctrl-C before there was anything to show (as shells report a SIGINT).
EXIT_INTERRUPTED = 130
#: The reader of stdout went away (``monitor config --markdown | head``), as shells report a SIGPIPE.
EXIT_BROKEN_PIPE = 141
