"""Files ``ductwork init`` writes (the sample product, also run by ``ductwork demo``)."""
