"""The deterministic district simulator's parts; the entry point is ``ops.simulator.simulate``."""
