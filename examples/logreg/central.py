"""The researcher's central part of the federated logistic regression (Newton-Raphson).

Each iteration, every site returns the gradient and Hessian of its patients' log-likelihood at the
current coefficients (``logreg_site.py``); because both are sums over patients, their sums over the
sites are the pooled data's, and one Newton-Raphson step

    beta_next = beta - H^-1 g

is exactly the step a pooled analysis would take. Iterating until the step is negligible gives the
pooled maximum-likelihood estimate without any patient leaving its site: :func:`pooled_fit` runs
the same iteration on pooled arrays for comparison.

Everything here is pure: :func:`federated_fit` takes a ``run_iteration`` callable that carries a
config to the sites and brings their ``result.json`` documents back, be it the PHT client posting
tasks to the registry or ``run_local.py`` running the containers directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from examples.logreg.logreg_site import design_matrix, gradient_hessian

FloatArray = npt.NDArray[np.float64]

TOLERANCE = 1e-10
MAX_ITERATIONS = 25


class ResultError(ValueError):
    """A site's result document is malformed or does not fit the model."""


class NotConvergedError(RuntimeError):
    """Newton-Raphson did not converge within the iteration limit."""


@dataclass(frozen=True)
class SiteResult:
    """One site's (or the sum of several sites') contribution at one set of coefficients."""

    gradient: FloatArray
    hessian: FloatArray
    n: int
    loglik: float


@dataclass(frozen=True)
class Fit:
    """The outcome of a Newton-Raphson fit."""

    coefficients: FloatArray
    iterations: int
    loglik: float
    n: int
    converged: bool
    history: list[FloatArray] = field(default_factory=list)


def parse_result(doc: Mapping[str, Any], parameters: int) -> SiteResult:
    """Check one site's ``result.json`` document for a model with ``parameters`` coefficients."""
    try:
        gradient = np.asarray(doc["gradient"], dtype=np.float64)
        hessian = np.asarray(doc["hessian"], dtype=np.float64)
        n = doc["n"]
        loglik = float(doc["loglik"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ResultError(f"result is missing or has a bad field: {exc}") from exc
    if gradient.shape != (parameters,):
        raise ResultError(f"gradient has shape {gradient.shape}, expected ({parameters},)")
    if hessian.shape != (parameters, parameters):
        raise ResultError(f"hessian has shape {hessian.shape}, expected {(parameters,) * 2}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ResultError(f"n must be a positive integer, got {n!r}")
    if not (np.all(np.isfinite(gradient)) and np.all(np.isfinite(hessian))):
        raise ResultError("gradient or hessian is not finite")
    if not math.isfinite(loglik) or loglik > 0:
        raise ResultError(f"loglik must be finite and <= 0, got {loglik!r}")
    if not np.allclose(hessian, hessian.T, rtol=1e-12, atol=0.0):
        raise ResultError("hessian is not symmetric")
    return SiteResult(gradient=gradient, hessian=hessian, n=n, loglik=loglik)


def combine(results: Sequence[SiteResult]) -> SiteResult:
    """The sum of the sites' contributions: the pooled data's gradient, Hessian and loglik."""
    if not results:
        raise ValueError("no site results to combine")
    return SiteResult(
        gradient=np.sum([r.gradient for r in results], axis=0),
        hessian=np.sum([r.hessian for r in results], axis=0),
        n=sum(r.n for r in results),
        loglik=math.fsum(r.loglik for r in results),
    )


def newton_step(gradient: FloatArray, hessian: FloatArray) -> FloatArray:
    """The Newton-Raphson step ``-H^-1 g`` (``H`` is the log-likelihood's Hessian)."""
    try:
        return np.asarray(np.linalg.solve(-hessian, gradient), dtype=np.float64)
    except np.linalg.LinAlgError as exc:
        raise NotConvergedError(
            "the Hessian is singular: a feature is constant or the outcome is separable"
        ) from exc


def is_converged(step: FloatArray, tolerance: float = TOLERANCE) -> bool:
    """True when no coefficient moved by ``tolerance`` or more."""
    return bool(np.max(np.abs(step)) < tolerance)


def make_config(
    coefficients: Sequence[float] | FloatArray, features: Sequence[str], iteration: int
) -> dict[str, Any]:
    """The task configuration the sites read from ``/pht/input/config.json``."""
    return {
        "coefficients": [float(c) for c in coefficients],
        "features": list(features),
        "iteration": iteration,
    }


def federated_fit(
    run_iteration: Callable[[dict[str, Any]], Sequence[Mapping[str, Any]]],
    features: Sequence[str],
    *,
    tolerance: float = TOLERANCE,
    max_iterations: int = MAX_ITERATIONS,
    on_iteration: Callable[[int, FloatArray, SiteResult, FloatArray], None] | None = None,
) -> Fit:
    """Newton-Raphson over the sites, starting from all-zero coefficients.

    ``run_iteration(config)`` returns the sites' result documents for that config.
    ``on_iteration(iteration, coefficients, combined, step)`` is called after each iteration
    (for progress output) with the coefficients the sites were given.
    """
    parameters = len(features) + 1
    beta = np.zeros(parameters)
    history = [beta]
    for iteration in range(1, max_iterations + 1):
        docs = run_iteration(make_config(beta, features, iteration))
        combined = combine([parse_result(doc, parameters) for doc in docs])
        step = newton_step(combined.gradient, combined.hessian)
        if on_iteration is not None:
            on_iteration(iteration, beta, combined, step)
        beta = beta + step
        history.append(beta)
        if is_converged(step, tolerance):
            return Fit(beta, iteration, combined.loglik, combined.n, True, history)
    raise NotConvergedError(f"no convergence within {max_iterations} iterations")


def pooled_fit(
    x: FloatArray,
    y: FloatArray,
    *,
    tolerance: float = TOLERANCE,
    max_iterations: int = MAX_ITERATIONS,
) -> Fit:
    """The same Newton-Raphson on pooled data: ``x`` is ``(n, k)`` features without the
    intercept's column (it is added here), ``y`` the outcomes in {0, 1}. Returns ``k + 1``
    coefficients, the intercept first."""
    design = design_matrix(x)
    y = np.asarray(y, dtype=np.float64)
    beta = np.zeros(design.shape[1])
    history = [beta]
    for iteration in range(1, max_iterations + 1):
        gradient, hessian, loglik = gradient_hessian(design, y, beta)
        step = newton_step(gradient, hessian)
        beta = beta + step
        history.append(beta)
        if is_converged(step, tolerance):
            return Fit(beta, iteration, loglik, len(y), True, history)
    raise NotConvergedError(f"no convergence within {max_iterations} iterations")
