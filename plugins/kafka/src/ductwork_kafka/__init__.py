"""Kafka broker for ductwork."""
