"""The runtime's version: generated modules import only a runtime of the version that generated them."""

#: protoc-gen-pygateway's version that emitted this package (tests keep it equal to the plugin's).
__version__ = "0.1.0"
