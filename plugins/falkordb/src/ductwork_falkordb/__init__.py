"""FalkorDB graph provider for ductwork."""
