"""Avro schemas of every event type, and the registry that loads them."""
