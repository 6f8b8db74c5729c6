"""Input plugins: one folder each, with a schema, a sample config and a README."""
