"""drivelab.agents."""
