"""Cost intelligence: price overrides, repricing, model prices and cost insights."""
