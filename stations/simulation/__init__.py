"""Simulated lines: pseudo-terminal plumbing, the fleet that plugs simulators in, device boot (POSIX)."""
