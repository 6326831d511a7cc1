"""The web view's static files (served by api.registry.webview; no Python here)."""
