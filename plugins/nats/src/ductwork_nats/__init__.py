"""NATS JetStream broker for ductwork."""
