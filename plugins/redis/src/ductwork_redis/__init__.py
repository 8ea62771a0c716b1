"""Redis cache and Redis Streams broker for ductwork."""
