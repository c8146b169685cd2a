"""Compute backends. `local` runs scripts as processes on the worker's host.

A backend dispatches (starts a runner for a claimed run) and polls (tells
whether that runner still lives). The runner itself only needs HTTP back to
the studio, so other backends (Slurm, Kubernetes) can start the same runner.
"""
