"""One run: the config, the training recipe, the runner, the run folder, its guard, checkpoints,
tracking and the run-level test writers (subject outputs, real-data test)."""
