"""Prefect flows and tasks, sources, sinks and the command line: the I/O around `transforms`."""
