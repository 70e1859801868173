"""The `mailfold` command, above both the service and the consumers it starts."""
