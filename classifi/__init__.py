"""The ``classifi`` command line: a thin front end over core's services."""
