"""Schemathesis against ``/openapi.json`` of a real ``pht serve``, with signed requests.

Every generated request (valid and invalid by the schema) is signed by a current member, so the
fuzzer reaches the resources behind authentication. Each answer must not be a 5xx and must conform
to the document: a documented status, content type, headers and body schema; requests the schema
forbids must be refused with a 4xx. Bounded: a few examples per operation.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.wire.httpsig import RequestSigner
from tests.api.registry_process import RegistryProcess, init_registry
from tests.ledger.factory import World

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


class SignRequests(requests.auth.AuthBase):
    """Signs each prepared request exactly as it will be sent (URL and body are final here)."""

    def __init__(self, signer: RequestSigner) -> None:
        self.signer = signer

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body
        if isinstance(body, str):
            body = body.encode()
            request.body = body
        self.signer.sign(
            request,
            body=body if isinstance(body, bytes) else None,
            created=int(time.time()),
            nonce=secrets.token_hex(16),
        )
        return request


@pytest.fixture(scope="module")
def fuzz_world() -> World:
    return World()


@pytest.fixture(scope="module")
def fuzz_registry(
    tmp_path_factory: pytest.TempPathFactory, fuzz_world: World
) -> Iterator[RegistryProcess]:
    process = RegistryProcess(init_registry(tmp_path_factory.mktemp("fuzz"), fuzz_world))
    process.start()
    time.sleep(1.0)  # requests signed in the registry's first second are refused by design
    yield process
    process.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_registry: RegistryProcess) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzz_registry.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_answers_conform_to_openapi(
    case: schemathesis.Case, fuzz_registry: RegistryProcess, fuzz_world: World
) -> None:
    # The document declares the signature as a "Signature" header; a case the fuzzer generated
    # without it (a negative case for the security scheme) is sent unsigned.
    signed = "signature" in {name.lower() for name in case.headers or {}}
    auth = SignRequests(RequestSigner(fuzz_world.keys["alice"])) if signed else None
    response = case.call(base_url=fuzz_registry.url, auth=auth, timeout=10)
    case.validate_response(response, checks=CHECKS, transport_kwargs={"auth": auth})
