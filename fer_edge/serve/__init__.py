"""`fer-edge serve`: the pipeline behind an HTTP API (docs/serve.md).

One job per module: ``decode`` (request bytes -> image, with the limits on bytes and pixels),
``batching`` (face crops of concurrent requests onto shared classifier calls), ``limits`` (bounded
concurrency and queue), ``metrics`` (Prometheus text), ``auth`` (the API key rule), ``openapi``
(the API's description), ``app`` (the Starlette routes), ``command`` (the CLI subcommand: uvicorn),
``ray_deployment`` (the same service as a Ray Serve application), ``ray_local`` (Ray Serve on one machine).
"""
