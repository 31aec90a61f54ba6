"""Simulation of the quote -> fill -> inventory -> hedge loop."""
