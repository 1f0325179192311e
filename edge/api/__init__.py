"""The HTTP API: the aiohttp app and its middleware, authentication and accounts, problem+json
errors, privacy redaction, the pull and status APIs, metrics, and the OpenAPI document that
describes every route. Plugins add their routes through their manifest (`edge.plugins`)."""
