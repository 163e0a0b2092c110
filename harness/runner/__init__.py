"""Runners: one algorithm on one case in a fresh sandbox (Docker) or a local process."""
