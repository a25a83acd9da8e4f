"""msgspec models of the HTTP APIs: request bodies that validate, responses that document.

Request models (``RequestModel`` subclasses) are what :func:`shared.http.models.convert_body`
checks bodies with; response models describe what the handlers answer. Both become the
components of the OpenAPI documents (:mod:`shared.http.openapi`).
"""
