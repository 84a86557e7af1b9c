"""Runnable demo of protoc-gen-pygateway: an example gRPC backend for the shop.v1 API.

`demo.backend` needs the generated `shop.v1` stubs on `sys.path`; see its module docstring.
"""
