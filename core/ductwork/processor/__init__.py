"""The processor's namespaces: ``dw.storage``, ``dw.events`` and the others."""
