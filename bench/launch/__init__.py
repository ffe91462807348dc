"""Launching: the ways of running a matrix's cells (executors), one file each, found by name
through `bench.launch.registry`; the matrix start-up they share is `bench.launch.start`."""
