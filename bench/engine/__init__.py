"""Engine: a run's lifecycle, the training loop, teachers, checkpoints, claims, the runner."""
