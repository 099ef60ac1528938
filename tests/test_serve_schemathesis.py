"""Property-based API test: Schemathesis generates requests (valid and not) from the app's
own OpenAPI schema; none may get a 5xx, and answers must match the documented shapes.

Two toy-encoder bundles (built in milliseconds): a fused one (random bytes never decode,
so this probes the request and audio checks) and a text-only one (random text reaches
the text encoder)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from support.serve_support import load_toy_bundle

from emofuse.serve import ServeLimits, create_app

LIMITS = ServeLimits(
    max_body_bytes=256 * 1024, max_audio_s=5.0, max_batch_files=3, max_text_chars=500
)
#: Bounded: a handful of examples per operation keeps the file well under a minute.
BOUNDED = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


def _schema(bundle):
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(bundle, limits=LIMITS))


@pytest.fixture(scope="module")
def fused_schema(tmp_path_factory):
    return _schema(load_toy_bundle(tmp_path_factory, "both"))


@pytest.fixture(scope="module")
def text_schema(tmp_path_factory):
    return _schema(load_toy_bundle(tmp_path_factory, "text"))


fused = schemathesis.pytest.from_fixture("fused_schema")
text_only = schemathesis.pytest.from_fixture("text_schema")


def _check(case) -> None:
    # Every check except two that cannot hold for multipart uploads: "schema-valid data is
    # accepted" (a schema cannot say the bytes must decode as audio, or that this model
    # needs a clip: those rightly get a 4xx) and "schema-violating data is rejected" (a
    # generated `false` for a text field goes over the wire as the valid string "false").
    response = case.call_and_validate(
        excluded_checks=[positive_data_acceptance, negative_data_rejection]
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        detail = response.json()["detail"]
        assert isinstance(detail, str) and detail, response.text


@fused.parametrize()
@BOUNDED
def test_fused_model_api_has_no_server_errors(case):
    _check(case)


@text_only.parametrize()
@BOUNDED
def test_text_model_api_has_no_server_errors(case):
    _check(case)
