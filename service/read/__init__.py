"""The read API: every endpoint answers from PostgreSQL only, for the caller's account only."""

from __future__ import annotations

from starlette.routing import Route

from service.read import (
    ab,
    activities,
    campaigns,
    contacts,
    deliveries,
    export,
    histograms,
    links,
    lists,
    openapi,
    recipients,
    reports,
    summary,
    suppressions,
    timeline,
)

DELIVERY = "/v1/deliveries/{campaignId}/{deliveryId}"

ROUTES = [
    Route(f"{DELIVERY}/recipients", recipients.endpoint),
    Route(f"{DELIVERY}/recipients/{{recipient}}/timeline", timeline.endpoint),
    Route(f"{DELIVERY}/summary", summary.endpoint),
    Route(f"{DELIVERY}/histogram", histograms.endpoint),
    Route(f"{DELIVERY}/links", links.endpoint),
    Route(f"{DELIVERY}/sent", lists.sent_endpoint),
    Route(f"{DELIVERY}/undelivered", lists.undelivered_endpoint),
    Route(f"{DELIVERY}/export", export.endpoint),
    Route(f"{DELIVERY}/ab", ab.delivery_endpoint),
    Route("/v1/campaigns/{campaignId}/ab", ab.campaign_endpoint),
    Route("/v1/deliveries", deliveries.endpoint),
    Route("/v1/campaigns", campaigns.list_endpoint),
    Route("/v1/campaigns/{campaignId}", campaigns.summary_endpoint),
    Route("/v1/reports", reports.endpoint),
    Route("/v1/activities", activities.log_endpoint),
    Route("/v1/activities/recent", activities.recent_endpoint),
    Route("/v1/contacts/{key}/activities", contacts.activities_endpoint),
    Route("/v1/contacts/{key}/timeline", contacts.timeline_endpoint),
    Route("/v1/suppressions", suppressions.endpoint),
    Route("/openapi.json", openapi.endpoint),
]
