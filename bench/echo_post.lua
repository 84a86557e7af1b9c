-- wrk script: POST a small JSON EchoMetadataRequest to /v1/metadata:echo
wrk.method = "POST"
wrk.path = "/v1/metadata:echo"
wrk.body = '{"note":"hello from wrk"}'
wrk.headers["Content-Type"] = "application/json"
