"""The HTTP API: the two ASGI apps, who is calling, errors as answers, refusals recorded, and the routes."""
