"""protoc-gen-pygateway: generate Python ASGI REST/JSON gateways for gRPC services."""

__version__ = "0.1.0"
