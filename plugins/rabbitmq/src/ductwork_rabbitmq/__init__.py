"""RabbitMQ broker for ductwork."""
