"""Resilience: quotas, fallbacks, circuit breakers and usage limits (see docs/resilience.md)."""
