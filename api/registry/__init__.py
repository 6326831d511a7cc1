"""The registry server (`pht serve`): the Falcon app over a ledger, its resources, request
authentication, the OpenAPI document, serving on waitress."""
