"""Circuits: what feeds a unit, what it feeds, and the separate paths behind each of its concepts."""

from .run import Circuit, CircuitError, Edge, ablation_curve, circuit, circuit_ends, expanded_weights, nearest_end

__all__ = ["Circuit", "CircuitError", "Edge", "ablation_curve", "circuit", "circuit_ends", "expanded_weights",
           "nearest_end"]
