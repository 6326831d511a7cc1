"""Deterministic synthetic patients for the federated logistic regression, as RDF.

Each site has its own size and case mix (age, BMI and smoking drawn around site-specific means);
the binary outcome is drawn from one true logistic model shared by all sites, so the pooled fit
estimates :data:`TRUE_COEFFICIENTS`. The same seed always gives the same patients, the same
N-Triples bytes and the same arrays.

Every value is generated as the exact text of its RDF literal (``xsd:integer`` ages,
``xsd:decimal`` BMIs with one decimal, ``xsd:boolean`` smoking and outcome) and the arrays for the
pooled reference fit are parsed back from that text, so the sites' SPARQL answers and the pooled
arrays hold bit-identical numbers.

Vocabulary (prefix :data:`VOCAB`): class ``Patient``; predicates ``age``, ``bmi``, ``smoker``,
``outcome`` and ``site``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

VOCAB = "https://pht.example/vocab#"
PATIENT_BASE = "https://pht.example/"
FEATURES: tuple[str, ...] = ("age", "bmi", "smoker")
OUTCOME = "outcome"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
XSD = "http://www.w3.org/2001/XMLSchema#"
SEED = 20240611

# Intercept, then one per feature in FEATURES order: logit P(outcome) = -9 + 0.08 age + ...
TRUE_COEFFICIENTS: tuple[float, ...] = (-9.0, 0.08, 0.12, 0.9)


@dataclass(frozen=True)
class SiteSpec:
    """One site's population: size and the distributions its patients are drawn from."""

    name: str
    patients: int
    age_mean: float
    age_sd: float
    bmi_mean: float
    bmi_sd: float
    smoker_rate: float
    seed_offset: int


SITES: dict[str, SiteSpec] = {
    spec.name: spec
    for spec in (
        SiteSpec("site-a", 300, 55.0, 12.0, 27.0, 4.0, 0.25, 1),
        SiteSpec("site-b", 200, 62.0, 10.0, 29.0, 5.0, 0.35, 2),
        SiteSpec("site-c", 150, 48.0, 14.0, 25.5, 3.5, 0.18, 3),
    )
}


@dataclass(frozen=True)
class Patient:
    """One patient as the lexical forms of its literals."""

    iri: str
    age: str
    bmi: str
    smoker: str
    outcome: str


def _sigmoid(eta: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    e = np.exp(-np.abs(eta))
    return np.where(eta >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def site_patients(site: str, patients: int | None = None, seed: int = SEED) -> list[Patient]:
    """The site's patients; ``patients`` overrides its size (the first ``patients`` drawn)."""
    spec = SITES[site]
    n = spec.patients if patients is None else patients
    if n < 0:
        raise ValueError("patients must be >= 0")
    rng = np.random.default_rng([seed, spec.seed_offset])
    # Draw the full population then cut, so a smaller site is a prefix of the full one.
    size = max(n, spec.patients)
    age = np.clip(np.rint(rng.normal(spec.age_mean, spec.age_sd, size)), 18, 95).astype(int)
    bmi = np.clip(np.round(rng.normal(spec.bmi_mean, spec.bmi_sd, size), 1), 15.0, 55.0)
    smoker = rng.random(size) < spec.smoker_rate
    features = np.column_stack([age, bmi, smoker]).astype(np.float64)
    beta = np.array(TRUE_COEFFICIENTS)
    eta = beta[0] + features @ beta[1:]
    outcome = rng.random(size) < _sigmoid(eta)
    return [
        Patient(
            iri=f"{PATIENT_BASE}{site}/patient/{i:05d}",
            age=str(int(age[i])),
            bmi=f"{bmi[i]:.1f}",
            smoker="true" if smoker[i] else "false",
            outcome="true" if outcome[i] else "false",
        )
        for i in range(n)
    ]


def ntriples(site: str, patients: Iterable[Patient]) -> str:
    """The patients as N-Triples, one patient's five triples after another."""
    v = VOCAB
    lines: list[str] = []
    for p in patients:
        s = f"<{p.iri}>"
        lines += [
            f"{s} <{RDF_TYPE}> <{v}Patient> .",
            f'{s} <{v}site> "{site}" .',
            f'{s} <{v}age> "{p.age}"^^<{XSD}integer> .',
            f'{s} <{v}bmi> "{p.bmi}"^^<{XSD}decimal> .',
            f'{s} <{v}smoker> "{p.smoker}"^^<{XSD}boolean> .',
            f'{s} <{v}{OUTCOME}> "{p.outcome}"^^<{XSD}boolean> .',
        ]
    return "\n".join(lines) + "\n"


def write_site_data(
    site: str, directory: str | os.PathLike[str], patients: int | None = None
) -> Path:
    """Write the site's N-Triples to ``directory/<site>.nt`` (mode 0644) and return the path."""
    path = Path(directory) / f"{site}.nt"
    path.write_text(ntriples(site, site_patients(site, patients)), encoding="utf-8")
    path.chmod(0o644)
    return path


def _number(lexical: str) -> float:
    """A literal's lexical form as a float, read the way the site script reads it."""
    if lexical in {"true", "false"}:
        return 1.0 if lexical == "true" else 0.0
    return float(lexical)


def site_arrays(
    site: str, patients: int | None = None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The site's feature matrix ``(n, 3)`` in FEATURES order and its outcomes, as floats."""
    rows = site_patients(site, patients)
    x = np.array(
        [[_number(p.age), _number(p.bmi), _number(p.smoker)] for p in rows], dtype=np.float64
    ).reshape(len(rows), len(FEATURES))
    y = np.array([_number(p.outcome) for p in rows], dtype=np.float64)
    return x, y


def pooled_arrays(
    sites: Sequence[str] = tuple(SITES), patients: int | None = None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """All sites' features and outcomes stacked: what a pooled analysis would see."""
    parts = [site_arrays(site, patients) for site in sites]
    return np.vstack([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write each site's synthetic patients as N-Triples."
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("--patients", type=int, help="patients per site (default: each site's own)")
    parser.add_argument("--sites", default=",".join(SITES), help="comma-separated site names")
    args = parser.parse_args(argv)
    args.directory.mkdir(parents=True, exist_ok=True)
    for site in args.sites.split(","):
        if site not in SITES:
            parser.error(f"unknown site {site!r}; known: {', '.join(SITES)}")
        path = write_site_data(site, args.directory, args.patients)
        _, y = site_arrays(site, args.patients)
        print(f"{path}: {len(y)} patients, {int(y.sum())} with the outcome", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
