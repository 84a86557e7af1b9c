-- Copied verbatim (but for this line) from ../shared/anchors/grpc-gateway-go/echo_post.lua.
-- wrk script: POST a small JSON EchoRequest to /v1/echo
wrk.method = "POST"
wrk.path = "/v1/echo"
wrk.body = '{"id":"abc","message":"hello","num":"42","tags":["a","b"],"labels":{"k":"v"}}'
wrk.headers["Content-Type"] = "application/json"
