"""The federated logistic regression's pure parts: the site's math, the researcher's
Newton-Raphson, the synthetic data. No Docker here; the end-to-end run is tested elsewhere."""

from __future__ import annotations

import ast
import json
import re
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from examples.logreg import central, data
from examples.logreg import logreg_site as site

SITE_SCRIPT = Path(site.__file__)


def _random_problem(
    seed: int, n: int = 200, k: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, k)) * np.array([1.0, 3.0, 0.5][:k])
    beta_true = rng.normal(size=k + 1)
    eta = beta_true[0] + x @ beta_true[1:]
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    return x, y, beta_true


def _site_docs(parts: list[tuple[np.ndarray, np.ndarray]], config: dict[str, Any]) -> list[Any]:
    """What the sites would send for ``config``, through a JSON round trip like the real files."""
    beta = np.array(config["coefficients"])
    docs = []
    for x, y in parts:
        g, h, ll = site.gradient_hessian(site.design_matrix(x), y, beta)
        doc = {"gradient": g.tolist(), "hessian": h.tolist(), "n": len(y), "loglik": ll}
        docs.append(json.loads(json.dumps(doc)))
    return docs


# ------------------------------------------------------------------------------- the site's math


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_gradient_equals_numeric_derivative_of_loglik(seed: int) -> None:
    x, y, _ = _random_problem(seed, n=80)
    design = site.design_matrix(x)
    beta = np.random.default_rng(seed + 100).normal(size=design.shape[1]) * 0.5
    gradient, _, _ = site.gradient_hessian(design, y, beta)
    h = 1e-6
    numeric = np.array(
        [
            (
                site.gradient_hessian(design, y, beta + h * e)[2]
                - site.gradient_hessian(design, y, beta - h * e)[2]
            )
            / (2 * h)
            for e in np.eye(len(beta))
        ]
    )
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_hessian_equals_numeric_derivative_of_gradient(seed: int) -> None:
    x, y, _ = _random_problem(seed, n=80)
    design = site.design_matrix(x)
    beta = np.random.default_rng(seed + 100).normal(size=design.shape[1]) * 0.5
    _, hessian, _ = site.gradient_hessian(design, y, beta)
    h = 1e-6
    numeric = np.column_stack(
        [
            (
                site.gradient_hessian(design, y, beta + h * e)[0]
                - site.gradient_hessian(design, y, beta - h * e)[0]
            )
            / (2 * h)
            for e in np.eye(len(beta))
        ]
    )
    np.testing.assert_allclose(hessian, numeric, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(hessian, hessian.T)
    assert np.all(np.linalg.eigvalsh(hessian) < 0)


def test_loglik_matches_the_textbook_formula() -> None:
    x, y, _ = _random_problem(7, n=50)
    design = site.design_matrix(x)
    beta = np.array([0.3, -0.2, 0.1, 0.4])
    p = 1.0 / (1.0 + np.exp(-(design @ beta)))
    expected = float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert site.gradient_hessian(design, y, beta)[2] == pytest.approx(expected, rel=1e-12)


def test_math_is_stable_for_extreme_linear_predictors() -> None:
    design = np.array([[1.0, 800.0], [1.0, -800.0], [1.0, 0.0]])
    y = np.array([1.0, 0.0, 1.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        g, h, ll = site.gradient_hessian(design, y, np.array([0.0, 1.0]))
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    assert ll == pytest.approx(-np.log(2.0))
    eta = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0])
    s = site.sigmoid(eta)
    assert np.all((s >= 0) & (s <= 1)) and s[2] == 0.5


def test_sums_over_sites_equal_the_pooled_sums() -> None:
    x, y, _ = _random_problem(8, n=120)
    beta = np.array([0.1, 0.2, -0.3, 0.05])
    pooled = site.gradient_hessian(site.design_matrix(x), y, beta)
    cuts = [(0, 70), (70, 71), (71, 120)]
    docs = _site_docs([(x[a:b], y[a:b]) for a, b in cuts], {"coefficients": beta.tolist()})
    combined = central.combine([central.parse_result(d, 4) for d in docs])
    np.testing.assert_allclose(combined.gradient, pooled[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(combined.hessian, pooled[1], rtol=1e-12, atol=1e-12)
    assert combined.loglik == pytest.approx(pooled[2], rel=1e-12)
    assert combined.n == 120


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="shapes"):
        site.gradient_hessian(np.ones((3, 2)), np.ones(3), np.ones(3))


# --------------------------------------------------------------------- the researcher's Newton


@pytest.mark.parametrize("seed", [10, 11, 12, 13])
def test_federated_newton_equals_pooled_fit_on_random_splits(seed: int) -> None:
    x, y, _ = _random_problem(seed, n=240)
    rng = np.random.default_rng(seed)
    cuts = sorted(rng.choice(np.arange(10, 230), size=2, replace=False))
    parts = [(x[a:b], y[a:b]) for a, b in zip([0, *cuts], [*cuts, len(y)], strict=True)]
    fed = central.federated_fit(lambda cfg: _site_docs(parts, cfg), ["f1", "f2", "f3"])
    pooled = central.pooled_fit(x, y)
    assert fed.converged and pooled.converged
    assert np.max(np.abs(fed.coefficients - pooled.coefficients)) <= 1e-8
    assert fed.iterations == pooled.iterations
    assert fed.n == len(y)


def test_federated_newton_on_the_example_sites_equals_pooled_fit() -> None:
    sizes = {"site-a": 60, "site-b": 45, "site-c": 30}
    parts = [data.site_arrays(s, n) for s, n in sizes.items()]
    seen: list[dict[str, Any]] = []

    def run_iteration(config: dict[str, Any]) -> list[Any]:
        seen.append(config)
        return _site_docs(parts, config)

    fed = central.federated_fit(run_iteration, data.FEATURES)
    x = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    pooled = central.pooled_fit(x, y)
    assert np.max(np.abs(fed.coefficients - pooled.coefficients)) <= 1e-8
    # The configs the sites got: zeros first, iterations numbered from 1, features in order.
    assert seen[0] == {"coefficients": [0.0] * 4, "features": list(data.FEATURES), "iteration": 1}
    assert [c["iteration"] for c in seen] == list(range(1, fed.iterations + 1))
    # At the MLE the summed gradient vanishes.
    g, _, _ = site.gradient_hessian(site.design_matrix(x), y, fed.coefficients)
    assert np.max(np.abs(g)) < 1e-6


def test_pooled_fit_recovers_the_true_coefficients_on_much_data() -> None:
    x, y, beta_true = _random_problem(20, n=20000)
    fit = central.pooled_fit(x, y)
    np.testing.assert_allclose(fit.coefficients, beta_true, atol=0.1)
    assert 3 <= fit.iterations <= 10
    assert fit.history[0].tolist() == [0.0] * 4


def test_converged_means_every_step_below_tolerance() -> None:
    assert central.is_converged(np.array([1e-11, -9e-11]))
    assert not central.is_converged(np.array([1e-11, -1e-10]))


def test_separable_data_does_not_pretend_to_converge() -> None:
    x = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    y = np.array([0.0, 0.0, 1.0, 1.0])
    with pytest.raises(central.NotConvergedError):
        central.pooled_fit(x, y)


def test_constant_feature_is_a_singular_hessian() -> None:
    x = np.column_stack([np.ones(10), np.arange(10.0)])
    y = np.array([0.0, 1.0] * 5)
    with pytest.raises(central.NotConvergedError, match="singular"):
        central.pooled_fit(x, y)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gradient": [1.0, 2.0]}, "gradient has shape"),
        ({"hessian": [[-1.0, 0.0], [0.0, -1.0]]}, "hessian has shape"),
        ({"n": 0}, "n must be"),
        ({"n": True}, "n must be"),
        ({"loglik": 1.5}, "loglik"),
        ({"gradient": [float("nan"), 0.0, 0.0]}, "not finite"),
        ({"hessian": [[-1.0, 0.5, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]}, "symmetric"),
        ({"gradient": None}, "gradient has shape"),
        ({"loglik": "x"}, "bad field"),
    ],
)
def test_malformed_site_results_are_refused(change: dict[str, Any], message: str) -> None:
    doc: dict[str, Any] = {
        "gradient": [0.0, 0.0, 0.0],
        "hessian": (-np.eye(3)).tolist(),
        "n": 5,
        "loglik": -3.0,
    }
    doc.update(change)
    with pytest.raises(central.ResultError, match=message):
        central.parse_result(doc, 3)
    with pytest.raises(central.ResultError, match="missing"):
        central.parse_result({"gradient": [0.0]}, 1)


# ----------------------------------------------------------------------- the site script itself


def test_site_script_needs_only_the_standard_library_and_numpy() -> None:
    tree = ast.parse(SITE_SCRIPT.read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert roots - set(sys.stdlib_module_names) == {"numpy"}


def test_query_asks_for_every_feature_and_the_outcome_in_a_stable_order() -> None:
    query = site.build_query(["age", "bmi"], site.DEFAULT_VOCAB, "outcome")
    assert "PREFIX v: <https://pht.example/vocab#>" in query
    assert re.search(r"SELECT \?patient \?age \?bmi \?outcome WHERE", query)
    assert "?patient a v:Patient" in query and "ORDER BY ?patient" in query


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ([], "JSON object"),
        ({"features": [], "coefficients": [0.0]}, "features"),
        ({"features": ["age", "age"], "coefficients": [0, 0, 0]}, "duplicates"),
        ({"features": ["a b"], "coefficients": [0, 0]}, "features"),
        ({"features": ["age"], "coefficients": [0.0]}, "2 finite numbers"),
        ({"features": ["age"], "coefficients": [0.0, True]}, "finite numbers"),
        ({"features": ["age"], "coefficients": [0.0, "1"]}, "finite numbers"),
        ({"features": ["age"], "coefficients": [0, 0], "vocab": "x> } DROP"}, "vocab"),
        ({"features": ["age"], "coefficients": [0, 0], "outcome": "age"}, "outcome"),
    ],
)
def test_bad_configs_are_refused(config: Any, message: str) -> None:
    with pytest.raises(site.SiteError, match=message) as info:
        site.parse_config(config)
    assert info.value.code == site.EXIT_CONFIG


def test_sparql_json_bindings_become_arrays() -> None:
    xsd = site.XSD

    def lit(value: str, datatype: str) -> dict[str, str]:
        return {"type": "literal", "value": value, "datatype": xsd + datatype}

    results = {
        "head": {"vars": ["patient", "age", "smoker", "outcome"]},
        "results": {
            "bindings": [
                {
                    "patient": {"type": "uri", "value": "https://pht.example/p/1"},
                    "age": lit("61", "integer"),
                    "smoker": lit("true", "boolean"),
                    "outcome": lit("false", "boolean"),
                },
                {
                    "age": lit("27.25", "decimal"),
                    "smoker": lit("0", "boolean"),
                    "outcome": lit("1", "boolean"),
                },
            ]
        },
    }
    x, y = site.to_arrays(results, ["age", "smoker"], "outcome")
    np.testing.assert_array_equal(x, [[61.0, 1.0], [27.25, 0.0]])
    np.testing.assert_array_equal(y, [0.0, 1.0])
    results["results"]["bindings"][0]["outcome"] = lit("2", "integer")
    with pytest.raises(site.SiteError, match="0 or 1"):
        site.to_arrays(results, ["age", "smoker"], "outcome")
    del results["results"]["bindings"][0]["age"]
    with pytest.raises(site.SiteError, match="not a literal"):
        site.to_arrays(results, ["age", "smoker"], "outcome")


def test_unreachable_endpoint_is_one_clear_error_and_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A port on loopback that was just free: nothing listens, so connecting is refused.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"coefficients": [0, 0], "features": ["age"], "iteration": 1}))
    monkeypatch.setattr(site, "CONFIG_PATH", config)
    monkeypatch.setattr(site, "OUTPUT_DIR", tmp_path)
    monkeypatch.setattr(site, "CONNECT_ATTEMPTS", 2)
    monkeypatch.setenv("SPARQL_ENDPOINT", f"http://127.0.0.1:{port}/query")
    assert site.main() == site.EXIT_ENDPOINT
    err = capsys.readouterr().err.strip()
    assert err.startswith("logreg_site: error: SPARQL endpoint http://127.0.0.1:")
    assert "unreachable after 2 attempts" in err and "\n" not in err
    assert not (tmp_path / "result.json").exists()


def test_missing_endpoint_and_config_are_distinct_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(site, "CONFIG_PATH", tmp_path / "absent.json")
    monkeypatch.setattr(site, "OUTPUT_DIR", tmp_path)
    monkeypatch.setenv("SPARQL_ENDPOINT", "http://127.0.0.1:9/query")
    assert site.main() == site.EXIT_CONFIG
    (tmp_path / "c.json").write_text('{"coefficients": [0, 0], "features": ["age"]}')
    monkeypatch.setattr(site, "CONFIG_PATH", tmp_path / "c.json")
    monkeypatch.delenv("SPARQL_ENDPOINT")
    assert site.main() == site.EXIT_ENDPOINT
    monkeypatch.setenv("SPARQL_ENDPOINT", "file:///etc/passwd")
    assert site.main() == site.EXIT_ENDPOINT


# ---------------------------------------------------------------------------- synthetic patients


def test_site_data_is_deterministic_and_differs_between_sites() -> None:
    assert data.ntriples("site-a", data.site_patients("site-a")) == data.ntriples(
        "site-a", data.site_patients("site-a")
    )
    sizes = {s: len(data.site_arrays(s)[1]) for s in data.SITES}
    assert sizes == {"site-a": 300, "site-b": 200, "site-c": 150}
    means = {s: data.site_arrays(s)[0].mean(axis=0) for s in data.SITES}
    assert means["site-b"][0] - means["site-c"][0] > 5  # older patients at site-b
    # Both outcomes occur at every site, so no site's data is separable on its own.
    for s in data.SITES:
        y = data.site_arrays(s)[1]
        assert 0.1 < y.mean() < 0.6


def test_a_smaller_site_is_a_prefix_of_the_full_one() -> None:
    full = data.site_patients("site-b")
    assert data.site_patients("site-b", 20) == full[:20]


def test_pooled_arrays_hold_exactly_the_values_in_the_rdf(tmp_path: Path) -> None:
    path = data.write_site_data("site-c", tmp_path, 40)
    assert path.stat().st_mode & 0o777 == 0o644
    values: dict[str, dict[str, str]] = {}
    pattern = re.compile(r'^<([^>]+)> <https://pht\.example/vocab#(\w+)> "([^"]*)"')
    for line in path.read_text().splitlines():
        if m := pattern.match(line):
            values.setdefault(m[1], {})[m[2]] = m[3]
    assert len(values) == 40
    rows = [values[iri] for iri in sorted(values)]

    def lex(value: str) -> float:
        return {"true": 1.0, "false": 0.0}[value] if value in {"true", "false"} else float(value)

    x = np.array([[lex(r[f]) for f in data.FEATURES] for r in rows])
    y = np.array([lex(r["outcome"]) for r in rows])
    px, py = data.site_arrays("site-c", 40)
    np.testing.assert_array_equal(px, x)
    np.testing.assert_array_equal(py, y)
    x_all, y_all = data.pooled_arrays(patients=10)
    assert x_all.shape == (30, 3) and y_all.shape == (30,)
