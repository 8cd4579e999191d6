"""Running gridloop: configuration, logging, CLI, simulator, provisioning."""
