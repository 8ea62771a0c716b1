"""S3 storage for ductwork (any S3-compatible endpoint)."""
