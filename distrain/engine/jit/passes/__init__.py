"""The optimisation passes over a captured graph, each switchable (optimize.py runs them in order)."""
