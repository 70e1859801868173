"""The read API: every endpoint answers from PostgreSQL only, for the caller's account only."""

from __future__ import annotations

from starlette.routing import Route

from service.read import recipients

ROUTES = [
    Route("/v1/deliveries/{campaignId}/{deliveryId}/recipients", recipients.endpoint),
]
