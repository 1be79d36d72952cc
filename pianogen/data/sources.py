"""Built-in data sources: maestro, folder, synthetic."""
