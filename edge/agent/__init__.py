"""The agent: the loop of injected parts, several cameras, assembly from a config, sources, metrics."""
