"""Google Cloud Storage for ductwork."""
