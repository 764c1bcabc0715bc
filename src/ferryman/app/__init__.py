"""Routing and handlers: requests in, response descriptions out (never socket writes)."""
