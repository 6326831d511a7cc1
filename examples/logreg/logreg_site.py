"""Site part of the federated logistic regression: one Newton-Raphson iteration's local sums.

Runs inside the ``pht-examples/logreg`` image as an unprivileged user on a read-only root file
system, with only the Python standard library and numpy. It

1. reads ``/pht/input/config.json``: ``{"coefficients": [b0, b1, ...], "features": [names...],
   "iteration": n}`` where ``b0`` is the intercept and ``b1...`` belong to the features in order
   (optional keys: ``"vocab"``, the IRI prefix of the predicates, and ``"outcome"``, the name of
   the binary outcome predicate);
2. asks the site's SPARQL endpoint (``$SPARQL_ENDPOINT``, SPARQL 1.1 protocol, POST form
   ``query=``) for every patient's features and outcome;
3. writes ``/pht/output/result.json``: the gradient and Hessian of the log-likelihood at the given
   coefficients, the number of patients and the log-likelihood, floats in full precision.

Only these sums leave the site. Exit codes: 0 done, 2 bad configuration, 3 endpoint unreachable or
its answer unusable, 4 no usable data. Errors are one line on stderr.

The math is :func:`gradient_hessian`; importing this module runs nothing, so the researcher's
central code and the tests use the very same function.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

CONFIG_PATH = Path("/pht/input/config.json")
OUTPUT_DIR = Path("/pht/output")
DEFAULT_VOCAB = "https://pht.example/vocab#"
DEFAULT_OUTCOME = "outcome"
PATIENT_CLASS = "Patient"
SPARQL_RESULTS_JSON = "application/sparql-results+json"
HTTP_TIMEOUT_S = 30.0
CONNECT_ATTEMPTS = 5

XSD = "http://www.w3.org/2001/XMLSchema#"
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# The vocabulary prefix goes into the query between < and >: no characters that could end it.
IRI_RE = re.compile(r"https?://[^\s<>\"{}|\\^`]+")

EXIT_CONFIG = 2
EXIT_ENDPOINT = 3
EXIT_DATA = 4


class SiteError(Exception):
    """A failure reported as one line and a distinct exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------------------ math


def sigmoid(eta: FloatArray) -> FloatArray:
    """The logistic function, without overflow for large ``|eta|``."""
    e = np.exp(-np.abs(eta))
    return np.where(eta >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def gradient_hessian(
    x: FloatArray, y: FloatArray, beta: FloatArray
) -> tuple[FloatArray, FloatArray, float]:
    """Gradient, Hessian and value of the logistic log-likelihood at ``beta``.

    ``x`` is the ``(n, p)`` design matrix (its first column the intercept's ones when the model has
    one), ``y`` the ``n`` outcomes in {0, 1}, ``beta`` the ``p`` coefficients. With
    ``eta = x @ beta`` and ``mu = sigmoid(eta)``:

    - log-likelihood ``sum(y * eta - log(1 + exp(eta)))``
    - gradient ``x.T @ (y - mu)``
    - Hessian ``-x.T @ diag(mu * (1 - mu)) @ x`` (negative semi-definite)

    These are sums over patients, so the sites' values add up to the pooled data's.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],) or beta.shape != (x.shape[1],):
        raise ValueError(f"shapes do not fit: x {x.shape}, y {y.shape}, beta {beta.shape}")
    eta = x @ beta
    mu = sigmoid(eta)
    gradient = x.T @ (y - mu)
    weights = mu * (1.0 - mu)
    hessian = -(x.T * weights) @ x
    # Exactly symmetric, whatever order the matrix product summed in.
    hessian = (hessian + hessian.T) / 2.0
    # log(1 + exp(eta)) without overflow.
    loglik = float(np.sum(y * eta - np.logaddexp(0.0, eta)))
    return gradient, hessian, loglik


def design_matrix(features: FloatArray) -> FloatArray:
    """Prepend the intercept's column of ones to an ``(n, k)`` feature matrix."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-D array, got shape {features.shape}")
    return np.hstack([np.ones((features.shape[0], 1)), features])


# ---------------------------------------------------------------------------------------- config


def parse_config(doc: Any) -> tuple[FloatArray, list[str], str, str]:
    """Validate the task configuration; return coefficients, features, vocabulary, outcome."""
    if not isinstance(doc, dict):
        raise SiteError("config: expected a JSON object", EXIT_CONFIG)
    features = doc.get("features")
    if (
        not isinstance(features, list)
        or not features
        or not all(isinstance(f, str) and NAME_RE.fullmatch(f) for f in features)
    ):
        raise SiteError(
            "config: 'features' must be a non-empty list of names like 'age'", EXIT_CONFIG
        )
    if len(set(features)) != len(features):
        raise SiteError("config: 'features' has duplicates", EXIT_CONFIG)
    coefficients = doc.get("coefficients")
    if (
        not isinstance(coefficients, list)
        or len(coefficients) != len(features) + 1
        or not all(
            isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c)
            for c in coefficients
        )
    ):
        raise SiteError(
            f"config: 'coefficients' must be {len(features) + 1} finite numbers "
            "(the intercept, then one per feature)",
            EXIT_CONFIG,
        )
    vocab = doc.get("vocab", DEFAULT_VOCAB)
    if not isinstance(vocab, str) or not IRI_RE.fullmatch(vocab):
        raise SiteError("config: 'vocab' must be an http(s) IRI prefix", EXIT_CONFIG)
    outcome = doc.get("outcome", DEFAULT_OUTCOME)
    if not isinstance(outcome, str) or not NAME_RE.fullmatch(outcome) or outcome in features:
        raise SiteError("config: 'outcome' must be a name that is not a feature", EXIT_CONFIG)
    return np.array(coefficients, dtype=np.float64), features, vocab, outcome


def build_query(features: list[str], vocab: str, outcome: str) -> str:
    """The SELECT for every patient's features and outcome, in a stable order."""
    variables = " ".join(f"?{name}" for name in [*features, outcome])
    patterns = " ;\n    ".join(f"v:{name} ?{name}" for name in [*features, outcome])
    return (
        f"PREFIX v: <{vocab}>\n"
        f"SELECT ?patient {variables} WHERE {{\n"
        f"  ?patient a v:{PATIENT_CLASS} ;\n    {patterns} .\n"
        f"}}\nORDER BY ?patient\n"
    )


# ---------------------------------------------------------------------------------------- SPARQL


def sparql_select(endpoint: str, query: str) -> dict[str, Any]:
    """POST the query (SPARQL 1.1 protocol, form-encoded) and return the parsed JSON results.

    Connection failures are retried briefly, since the endpoint may still be starting.
    """
    body = urllib.parse.urlencode({"query": query}).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked in main()
        endpoint,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": SPARQL_RESULTS_JSON,
        },
    )
    last_error = ""
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:  # noqa: S310
                raw = response.read()
            break
        except urllib.error.HTTPError as exc:
            detail = exc.read(300).decode("utf-8", "replace").strip().replace("\n", " ")
            raise SiteError(
                f"SPARQL endpoint {endpoint} answered HTTP {exc.code}: {detail}", EXIT_ENDPOINT
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            last_error = f"{type(exc).__name__}: {reason}"
            if attempt + 1 < CONNECT_ATTEMPTS:
                time.sleep(0.2 * 2**attempt)
    else:
        raise SiteError(
            f"SPARQL endpoint {endpoint} unreachable after {CONNECT_ATTEMPTS} attempts "
            f"({last_error})",
            EXIT_ENDPOINT,
        )
    try:
        doc = json.loads(raw)
        bindings = doc["results"]["bindings"]
        if not isinstance(bindings, list):
            raise TypeError("bindings is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise SiteError(
            f"SPARQL endpoint {endpoint} did not answer with SPARQL JSON results ({exc})",
            EXIT_ENDPOINT,
        ) from exc
    return dict(doc)


def literal_number(term: Any, name: str) -> float:
    """A numeric or boolean RDF literal from a SPARQL JSON binding as a float."""
    if not isinstance(term, dict) or term.get("type") not in {"literal", "typed-literal"}:
        raise SiteError(f"data: ?{name} is not a literal: {term!r}", EXIT_DATA)
    value = str(term.get("value", ""))
    if term.get("datatype") == XSD + "boolean":
        if value in {"true", "1"}:
            return 1.0
        if value in {"false", "0"}:
            return 0.0
        raise SiteError(f"data: ?{name} is not a boolean: {value!r}", EXIT_DATA)
    try:
        number = float(value)
    except ValueError:
        raise SiteError(f"data: ?{name} is not a number: {value!r}", EXIT_DATA) from None
    if not math.isfinite(number):
        raise SiteError(f"data: ?{name} is not finite: {value!r}", EXIT_DATA)
    return number


def to_arrays(
    results: dict[str, Any], features: list[str], outcome: str
) -> tuple[FloatArray, FloatArray]:
    """Feature matrix ``(n, k)`` and outcome vector from SPARQL JSON results."""
    rows: list[list[float]] = []
    outcomes: list[float] = []
    for binding in results["results"]["bindings"]:
        rows.append([literal_number(binding.get(name), name) for name in features])
        y = literal_number(binding.get(outcome), outcome)
        if y not in {0.0, 1.0}:
            raise SiteError(f"data: ?{outcome} must be 0 or 1, got {y!r}", EXIT_DATA)
        outcomes.append(y)
    x = np.array(rows, dtype=np.float64).reshape(len(rows), len(features))
    return x, np.array(outcomes, dtype=np.float64)


# ------------------------------------------------------------------------------------------ main


def run(config_path: Path, output_dir: Path, endpoint: str) -> dict[str, Any]:
    """Do the site's work and write ``result.json``; return what was written."""
    try:
        doc = json.loads(config_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SiteError(f"config: cannot read {config_path}: {exc.strerror}", EXIT_CONFIG) from exc
    except ValueError as exc:
        raise SiteError(f"config: {config_path} is not JSON: {exc}", EXIT_CONFIG) from exc
    beta, features, vocab, outcome = parse_config(doc)
    if not endpoint:
        raise SiteError("SPARQL_ENDPOINT is not set", EXIT_ENDPOINT)
    if urllib.parse.urlsplit(endpoint).scheme not in {"http", "https"}:
        raise SiteError(f"SPARQL_ENDPOINT must be an http(s) URL, got {endpoint!r}", EXIT_ENDPOINT)
    results = sparql_select(endpoint, build_query(features, vocab, outcome))
    x, y = to_arrays(results, features, outcome)
    if len(y) == 0:
        raise SiteError(f"data: the endpoint returned no patients with {features}", EXIT_DATA)
    gradient, hessian, loglik = gradient_hessian(design_matrix(x), y, beta)
    result = {
        "gradient": gradient.tolist(),
        "hessian": hessian.tolist(),
        "n": len(y),
        "loglik": loglik,
        "features": features,
        "iteration": doc.get("iteration"),
    }
    # json writes floats with repr(): the shortest text that reads back as the same double.
    tmp = output_dir / "result.json.tmp"
    tmp.write_text(json.dumps(result, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(output_dir / "result.json")
    return result


def main() -> int:
    started = time.monotonic()
    endpoint = os.environ.get("SPARQL_ENDPOINT", "")
    try:
        result = run(CONFIG_PATH, OUTPUT_DIR, endpoint)
    except SiteError as exc:
        print(f"logreg_site: error: {exc}", file=sys.stderr)
        return exc.code
    print(
        f"logreg_site: iteration {result['iteration']}: {result['n']} patients, "
        f"loglik {result['loglik']:.6f}, {time.monotonic() - started:.3f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
