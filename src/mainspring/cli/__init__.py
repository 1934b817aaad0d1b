"""The ``mainspring`` command: one module per command group."""
