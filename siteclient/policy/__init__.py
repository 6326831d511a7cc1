"""The image policy: the site's allowlist over strictly parsed image references."""
