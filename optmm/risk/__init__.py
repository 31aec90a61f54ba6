"""Exposures, scenarios, limits and the layered risk controller (built on :mod:`optmm.greeks`)."""
