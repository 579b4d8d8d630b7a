"""Producers of backups: the database dump, the storage snapshot, the configuration, the full set (and
the incremental segments). Each writes through the repository and knows nothing of the consumers."""
