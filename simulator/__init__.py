"""A simulated media platform with a known ground truth: the pipeline's default data source."""
