"""The container runtime: the interface the executor uses (``base.py``), the run specification
(``spec.py``), the sandbox options (``sandbox.py``), and the Docker adapter (``docker.py``, with
what it reads from one container in ``container.py``)."""
