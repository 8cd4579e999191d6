"""The write side: domain aggregates, catalogue, application service, codec."""
