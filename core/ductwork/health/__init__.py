"""Health checks: probes of a product's providers, their status, and alerts on a change."""
