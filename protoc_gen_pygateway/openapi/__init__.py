"""OpenAPI 3.1 documents of the generated gateways (`--pygateway_opt=openapi=true`).

`schema` maps proto types to JSON Schema by protojson's rules, `document` turns the gateway's model
(the same `model.Service` objects the templates render) into one document per proto file, `merge`
combines documents (`python -m protoc_gen_pygateway.openapi.merge a.json b.json > all.json`).
"""

from .document import build_document, document_name, dumps, render_documents
from .paths import MergeError

__all__ = ["MergeError", "build_document", "document_name", "dumps", "render_documents"]
