"""Feature visualisation: parameterised images optimised to excite units (config, render, cache)."""
