"""HTTP apps and their actions: call an API's endpoints by tag, per environment.

An *app* in ``ductwork.yaml`` holds, per environment, a base URL, credentials and timeouts, and
a set of *actions* (method, path template, request type, input schemas). ``dw.actions.run``
validates the input, authenticates, sends the request with httpx, retries by status and returns
an :class:`~ductwork.apps.runner.ActionResult`.

Modules: :mod:`.models` (config), :mod:`.schema` (input validation), :mod:`.inputs` (routing
input to body, query, params and headers), :mod:`.auth`, :mod:`.retry`, :mod:`.runner` (the
HTTP calls), :mod:`.body` (bodies in bounded memory: limits, decoding, streams) and
:mod:`.openapi` (importing an OpenAPI document). Importing this package does not
import httpx; :mod:`.runner` and :mod:`.auth` do.
"""
