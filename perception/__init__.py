"""drivelab.perception."""
