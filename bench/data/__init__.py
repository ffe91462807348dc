"""Data: the datasets (bench/data/datasets/, one file each, registered), the backends that load
them (bench/data/backends/, one file each, registered), the shared augmentation, and
`loaders.make_loaders`, the one entry from a DataSpec to its loaders. Light at import: the spec
reads the registries below it, and plugin files register into them."""
