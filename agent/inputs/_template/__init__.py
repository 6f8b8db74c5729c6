"""Copy-me template for a new input plugin (see README.md)."""
