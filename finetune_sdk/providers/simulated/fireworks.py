"""Fireworks AI's vocabulary for the simulated backend (to be written: issue 11)."""
