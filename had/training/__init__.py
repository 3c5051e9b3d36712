"""The parts of `had train` (had.pipeline.train builds a run from them): checkpoints, the step loop,
the data order and the metrics log."""
