"""BHV360 backups: producers, locations, manifests and consumers of backups."""

__version__ = "0.1.0"
