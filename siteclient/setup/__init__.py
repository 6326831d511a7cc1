"""Setting a site up: ``siteclient init`` and ``siteclient check-config``."""
