"""What is stored in a location and how it is read back: one place for producers and consumers."""
