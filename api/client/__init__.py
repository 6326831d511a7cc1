"""The clients: the registry's HTTP client (:class:`Client`, in ``registry``, reading answers
into the values of ``answers``) and the researcher's :class:`Analyst`, which verifies every result
it reads against the registry's signed log. Both send through ``transport``'s one signed,
retrying request path, which the site's FileService client shares."""

from api.client.analyst import Analyst
from api.client.answers import Appended, Page, SiteState, TaskProgress, TaskView
from api.client.registry import Client
from api.client.transport import RetryPolicy, SignedTransport

__all__ = [
    "Analyst",
    "Appended",
    "Client",
    "Page",
    "RetryPolicy",
    "SignedTransport",
    "SiteState",
    "TaskProgress",
    "TaskView",
]
