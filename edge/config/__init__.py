"""The agent's configuration: one file, environment variables and flags; several cameras."""
