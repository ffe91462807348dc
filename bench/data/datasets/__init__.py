"""Datasets: files on disk, their content hashes and in-memory splits."""
