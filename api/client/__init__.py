"""The clients: the registry's HTTP client (:class:`Client`) and the researcher's
:class:`Analyst`, which verifies every result it reads against the registry's signed log."""

from api.client.analyst import Analyst
from api.client.registry import Client

__all__ = ["Analyst", "Client"]
