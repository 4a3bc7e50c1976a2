"""drivelab.benchmarks."""
