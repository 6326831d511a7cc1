"""The registry's HTTP API (Falcon on waitress), request authentication, and the HTTP client."""
