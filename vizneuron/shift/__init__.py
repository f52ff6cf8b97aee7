"""SHIFT for vision: find the SAE features a classifier uses for a cue it should ignore, trim them, measure the fix."""
