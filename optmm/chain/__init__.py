"""Fitting vol surfaces to option chains (see docs/fitting.md)."""
