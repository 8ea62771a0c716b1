"""User sessions: encrypted access tokens, rotating refresh tokens, revocation.

The config model is :mod:`ductwork.sessions.models`, the cryptography
:mod:`ductwork.sessions.tokens` (joserfc's compact JWE, ``dir`` + ``A256GCM``), the rows
:mod:`ductwork.sessions.rows` (the engine's store); users call them through ``dw.sessions``
(:mod:`ductwork.processor.sessions`).
"""
