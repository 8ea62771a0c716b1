"""Firebase Cloud Messaging (HTTP v1) push notifier for ductwork."""
