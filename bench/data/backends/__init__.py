"""Backends: batches of a dataset on the device (torch DataLoader, in-memory tensors, FFCV)."""
