"""Reach D. Box: the domain and the queue (config, jobs, send task, reconciler, CLI)."""
