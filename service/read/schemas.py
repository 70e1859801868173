"""JSON Schemas of the API's parameters, bodies and answers (OpenAPI 3.1, JSON Schema 2020-12).

Each parameter schema states exactly what the endpoint accepts: a value the schema allows is
never refused, and one it forbids never accepted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.read import params, recipients

Spec = dict[str, Any]

NO_NUL = "^[^\u0000]*$"  # PostgreSQL text cannot hold NUL
# Ids in a path: no NUL and no "/"; a leading "." would let a client collapse ".." segments.
PATH_ID: Spec = {
    "type": "string",
    "minLength": 1,
    "maxLength": 256,
    "pattern": "^[^/.\u0000][^/\u0000]*$",
}
MOMENT: Spec = {"type": "string", "anyOf": [{"format": "date"}, {"format": "date-time"}]}
CURSOR: Spec = {"type": "string", "pattern": f"^{params.CURSOR_PATTERN}$"}
ZONE: Spec = {"$ref": "#/components/schemas/TimeZone"}
# An event id as mailfold.events carries it (schemas/event.v1.json): 32 lower-case hex digits.
EVENT_ID: Spec = {"type": "string", "pattern": "^[0-9a-f]{32}$"}

STR: Spec = {"type": "string"}
NSTR: Spec = {"type": ["string", "null"]}
TIME: Spec = {"type": ["string", "null"], "format": "date-time"}
COUNT: Spec = {"type": "integer", "minimum": 0}
NUMBER: Spec = {"type": ["number", "null"]}
RATE: Spec = {"type": ["number", "null"], "minimum": 0}
# Python's str.isspace(), which the Event API applies to e-mail addresses
SPACE = "\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def integer(low: int, high: int, default: int) -> Spec:
    return {"type": "integer", "minimum": low, "maximum": high, "default": default}


def text(limit: int) -> Spec:
    return {"type": "string", "minLength": 1, "maxLength": limit, "pattern": NO_NUL}


def enum(values: Iterable[str], default: str) -> Spec:
    return {"type": "string", "enum": list(values), "default": default}


def comma_list(values: Iterable[str]) -> Spec:
    alternatives = "|".join(values)
    return {"type": "string", "pattern": f"^({alternatives})(,({alternatives}))*$"}


def sort_list(keys: Iterable[str]) -> Spec:
    one = f"[-+]?({'|'.join(keys)})"
    return {"type": "string", "pattern": f"^$|^{one}(,{one})*$"}


def obj(properties: Spec, *, optional: Iterable[str] = ()) -> Spec:
    """An object whose properties are all required except `optional`."""
    skip = set(optional)
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in skip],
    }


def ok(schema: Spec, description: str = "OK.") -> Spec:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR_TEXT = {
    "400": "A parameter or the body is invalid; details[] names it.",
    "401": "No or wrong credentials (HTTP Basic login:secret).",
    "403": "The caller's address is not on the account's allow list, or the account is disabled.",
    "404": "Nothing this account owns answers to that.",
    "413": "The body is larger than the configured maximum.",
    "503": "A dependency did not answer; retry after Retry-After seconds.",
}
HEADERS = {
    "401": {"WWW-Authenticate": {"schema": STR}},
    "503": {"Retry-After": {"schema": STR}},
}


def errors(*codes: str) -> Spec:
    out = {}
    for code in codes:
        response = ok({"$ref": "#/components/schemas/Error"}, ERROR_TEXT[code])
        if code in HEADERS:
            response["headers"] = HEADERS[code]
        out[code] = response
    return out


PAGING = obj({"start": COUNT, "count": COUNT, "totalCount": COUNT})


def paged(key: str, item: Spec) -> Spec:
    return obj({key: {"type": "array", "items": item}, "paging": PAGING})


def feed(key: str, item: Spec) -> Spec:
    return obj(
        {key: {"type": "array", "items": item}, "cursor": CURSOR, "hasMore": {"type": "boolean"}}
    )


def _fields(names: Iterable[str], schema: Spec) -> Spec:
    return {name: schema for name in names}


RECIPIENT = obj(
    {
        **_fields(["contactId", "clientContactId", "firstName", "surname", "email"], NSTR),
        **_fields(["sentAt", "deliveredAt", "openedAt", "clickedAt", "unsubscribedAt"], TIME),
        **_fields(["complainedAt", "bouncedAt", "droppedAt"], TIME),
        **_fields(["openCount", "openCountHuman", "openCountMachine"], COUNT),
        **_fields(["clickCount", "clickCountHuman", "clickCountMachine"], COUNT),
        **_fields(["bounceClass", "bounceCode", "bounceReason"], NSTR),
        "conversionsAmount": NUMBER,
        "conversionsCurrency": NSTR,
        "conversionsNumber": COUNT,
        "abVersion": NSTR,
        "status": {"type": "string", "enum": list(recipients.STATUSES)},
        "deliveryStatus": {"type": "string", "enum": list(recipients.DELIVERY_STATUSES)},
    }
)
assert set(RECIPIENT["properties"]) == set(recipients.FIELD_NAMES)

EVENT_TYPE: Spec = {"type": "string"}
TIMELINE_EVENT = obj(
    {
        "eventId": EVENT_ID,
        "type": EVENT_TYPE,
        "occurredAt": {"type": "string", "format": "date-time"},
        "receivedAt": TIME,
        "source": STR,
        "nativeType": STR,
        **_fields(["messageId", "url", "ip", "userAgent", "machineReason", "agentClass"], NSTR),
        "machine": {"type": ["boolean", "null"]},
        **_fields(["bounceClass", "bounceCode", "bounceReason", "abVersion"], NSTR),
        "conversionsAmount": NUMBER,
        "conversionsCurrency": NSTR,
        "name": NSTR,
        "payload": {},
    }
)
TIMELINE = obj(
    {
        "recipient": obj(
            {
                "recipientKey": STR,
                **_fields(["email", "contactId", "clientContactId", "firstName"], NSTR),
                **_fields(["surname", "abVersion"], NSTR),
                "status": STR,
            }
        ),
        "events": {"type": "array", "items": TIMELINE_EVENT},
        "paging": PAGING,
    }
)
ACTIVITY = obj(
    {
        "eventId": EVENT_ID,
        "occurredAt": {"type": "string", "format": "date-time"},
        "type": EVENT_TYPE,
        **_fields(["campaignId", "deliveryId"], NSTR),
        "recipientKey": STR,
        **_fields(["email", "contactId", "clientContactId", "url", "ip", "userAgent"], NSTR),
        "machine": {"type": ["boolean", "null"]},
        **_fields(["bounceClass", "bounceCode", "bounceReason"], NSTR),
        "conversionsAmount": NUMBER,
        "conversionsCurrency": NSTR,
        "name": NSTR,
    }
)
CONTACT_ACTIVITIES = obj(
    {"contact": STR, "activities": {"type": "array", "items": ACTIVITY}, "paging": PAGING}
)
CONTACT_EVENT = obj(
    {
        **TIMELINE_EVENT["properties"],
        **_fields(["campaignId", "deliveryId"], NSTR),
        "recipientKey": STR,
    }
)
CONTACT_TIMELINE = obj(
    {"contact": STR, "events": {"type": "array", "items": CONTACT_EVENT}, "paging": PAGING}
)
COUNTS = [
    "total", "sent", "dropped", "delivered", "failed", "undelivered", "bounces", "bouncesUnique",
    "hardBouncesUnique", "softBouncesUnique", "opens", "opensHuman", "opensMachine",
    "opensUnique", "opensUniqueHuman", "opensUniqueMachine", "clicks", "clicksHuman",
    "clicksMachine", "clicksUnique", "clicksUniqueHuman", "clicksUniqueMachine", "unsubscribes",
    "unsubscribesUnique", "complaints", "complaintsUnique", "churn", "conversions",
    "conversionsUnique",
]  # fmt: skip
OPEN_CLICK_RATES = ["openRate", "openRateUnique", "clickRate", "clickRateUnique", "ctor"]
RATES = [*OPEN_CLICK_RATES, "deliveryRate", "bounceRate", "unsubRate", "complaintRate", "churnRate"]
SUMMARY = obj(
    {
        "campaignId": STR,
        "deliveryId": STR,
        **_fields(COUNTS, COUNT),
        "revenue": {"type": "array", "items": obj({"currency": NSTR, "amount": NUMBER})},
        "rates": obj(_fields(RATES, RATE)),
        "ratesHuman": obj(_fields(OPEN_CLICK_RATES, RATE)),
    }
)
# The delivery and campaign lists: the summary's counts and rates per row
FUNNEL: Spec = {
    **_fields(COUNTS, COUNT),
    "rates": obj(_fields(RATES, RATE)),
    "ratesHuman": obj(_fields(OPEN_CLICK_RATES, RATE)),
}
DELIVERY_ROW = obj({"deliveryId": STR, "campaignId": NSTR, "firstSentAt": TIME, **FUNNEL})
# The report builder's answer: the groups, then the totals row (service/read/reports.py).
REPORT = obj(
    {
        "metadata": obj(
            {
                "ready": {"type": "boolean"},
                "timeZone": STR,
                "dateFrom": {"type": "string", "format": "date"},
                "dateTo": {"type": ["string", "null"], "format": "date"},
                "groups": COUNT,
                "truncated": {"type": "boolean"},
            }
        ),
        "result": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": {"type": ["string", "integer", "number", "null"]},
            },
        },
        "error": {"type": "null"},
    }
)
CAMPAIGN_ROW = obj({"campaignId": STR, "deliveries": COUNT, "firstSentAt": TIME, **FUNNEL})
CAMPAIGN_SUMMARY = obj(
    {
        **CAMPAIGN_ROW["properties"],
        "deliveryIds": {"type": "array", "items": STR},
        "revenue": SUMMARY["properties"]["revenue"],
    }
)
BUCKET_COUNTS = [
    "sent", "delivered", "deferred", "dropped", "bounced", "bouncedHard", "opened", "openedHuman",
    "openedMachine", "clicked", "clickedHuman", "clickedMachine", "unsubscribed", "complained",
    "converted", "custom",
]  # fmt: skip
HISTOGRAM = obj(
    {
        "interval": STR,
        "timeZone": STR,
        "buckets": {
            "type": "array",
            "items": obj(
                {
                    "start": {"type": "string", "format": "date-time"},
                    **_fields(BUCKET_COUNTS, COUNT),
                    "conversionsAmount": NUMBER,
                }
            ),
        },
    }
)
LINK = obj(
    {
        "url": STR,
        **_fields(["clicks", "clicksMachine", "clicksNotMachine"], COUNT),
        **_fields(["uniqueClickers", "uniqueClickersNotMachine"], COUNT),
        "firstClickedAt": TIME,
    }
)
PERSON = _fields(["contactId", "clientContactId", "firstName", "surname", "email"], NSTR)
SENT = obj(
    {
        **PERSON,
        **_fields(["sentAt", "deliveredAt", "bouncedAt"], TIME),
        "abVersion": NSTR,
        "status": STR,
    }
)
UNDELIVERED = obj(
    {
        **PERSON,
        "reason": {"type": "string", "enum": ["dropped", "hard_bounced", "soft_bounced"]},
        "at": TIME,
        "code": NSTR,
        "detail": NSTR,
    }
)
SUPPRESSION = obj(
    {
        "email": STR,
        "reason": {"type": "string", "enum": ["unsubscribed", "hard_bounced", "complained"]},
        **_fields(["reasonAt", "firstAt", "updatedAt"], {"type": "string", "format": "date-time"}),
        **_fields(["campaignId", "deliveryId"], NSTR),
    }
)
REFUSAL = obj(
    {
        "provider": STR,
        "refusedAt": {"type": "string", "format": "date-time"},
        "status": {"type": "integer", "minimum": 400, "maximum": 499},
        "reason": STR,
        "remoteAddr": NSTR,
        "requestId": NSTR,
    }
)
REFUSALS = obj({"refusals": {"type": "array", "items": REFUSAL}})
ACCEPTED = obj({"accepted": COUNT, "request_id": STR})
OK_TRUE = obj({"ok": {"const": True}})
HEALTH = obj({"status": {"const": "ok"}})
READY = obj(
    {
        "ready": {"type": "boolean"},
        "checks": {"type": "object", "additionalProperties": STR},
    }
)
ANY_BODY: Spec = {
    "application/json": {"schema": {}},
    "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
}


def id_field(limit: int) -> Spec:
    return {"type": ["string", "null"], "minLength": 1, "maxLength": limit, "pattern": NO_NUL}


def events_body(max_events: int, types: list[str]) -> Spec:
    """The Event API's body (service/events_api.py): one event or 1 to `max_events` of them."""
    email = {
        "type": ["string", "null"],
        "minLength": 1,
        "maxLength": 256,
        "pattern": f"^[^{SPACE}\u0000]*@[^{SPACE}\u0000]*$",  # no white space, no NUL
    }
    recipient = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "email": email,
            **_fields(["contact_id", "client_contact_id", "first_name", "surname"], id_field(256)),
        },
        "anyOf": [
            {"required": [key], "properties": {key: {"type": "string"}}}
            for key in ("email", "contact_id", "client_contact_id")
        ],
    }
    amount = {
        "anyOf": [
            {"type": "number", "exclusiveMinimum": -1e16, "exclusiveMaximum": 1e16},
            {"type": "string", "pattern": r"^[+-]?([0-9]{1,16}(\.[0-9]{0,4})?|\.[0-9]{1,4})$"},
        ]
    }
    conversion = {
        "type": "object",
        "required": ["amount"],
        "properties": {
            "amount": amount,
            "currency": {"type": ["string", "null"], "pattern": "^[A-Za-z]{3}$"},
        },
    }
    bounce = {
        "type": ["object", "null"],
        "properties": {
            "class": {"enum": ["hard", "soft", None]},
            "code": id_field(2048),
            "reason": id_field(2048),
        },
    }
    common: Spec = {
        "type": {"type": "string"},
        "occurred_at": {
            "type": "string",
            "format": "date-time",
            "pattern": "^(19[7-9][0-9]|[2-9][0-9]{3})-",
            "description": "ISO-8601 with a zone, in the years 1970-9999.",
        },
        **_fields(["id", "campaign_id", "delivery_id", "message_id", "ab_version"], id_field(256)),
        **_fields(["url", "ip", "user_agent"], id_field(2048)),
        "recipient": recipient,
        "bounce": bounce,
        "machine": {"type": ["boolean", "null"]},
        "conversion": {**conversion, "type": ["object", "null"]},
        "name": id_field(128),
        "payload": {"$ref": "#/components/schemas/Payload"},
    }

    def variant(kinds: list[str], **overrides: Spec) -> Spec:
        required = ["type", "occurred_at", "recipient", *overrides]
        props = {**common, **overrides, "type": {"type": "string", "enum": kinds}}
        return {
            "type": "object",
            "additionalProperties": False,
            "required": required,
            "properties": props,
            "anyOf": [
                {"required": [key], "properties": {key: {"type": "string"}}}
                for key in ("delivery_id", "message_id")
            ],
        }

    plain = [t for t in types if t not in ("converted", "custom")]
    event = {
        "oneOf": [
            variant(plain),
            variant(["converted"], conversion=conversion),
            variant(["custom"], name={"type": "string", "minLength": 1, "maxLength": 128}),
            named_event(email, common),
        ]
    }
    return {
        "oneOf": [event, {"type": "array", "minItems": 1, "maxItems": max_events, "items": event}]
    }


def named_event(email: Spec, common: Spec) -> Spec:
    """A named event: `{name, payload}` without `type`, a custom event of the contact
    the payload names (`email`, else `contact_id` or `client_contact_id`)."""
    payload = {
        "type": "object",
        "propertyNames": {"pattern": NO_NUL},
        "properties": {
            "email": email,
            **_fields(["contact_id", "client_contact_id"], id_field(256)),
        },
        "additionalProperties": {"$ref": "#/components/schemas/Payload"},
        "anyOf": [
            {"required": [key], "properties": {key: {"type": "string"}}}
            for key in ("email", "contact_id", "client_contact_id")
        ],
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "payload"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": NO_NUL},
            "payload": payload,
            "occurred_at": common["occurred_at"],
            "id": common["id"],
        },
    }


def ab_report(*scope: str) -> Spec:
    """The A/B report (service/read/ab.py): the summary's funnel and z-tests per version."""
    test = obj(
        {
            "best": NSTR,
            "z": {"type": ["number", "null"]},
            "pValue": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "reason": NSTR,
        }
    )
    tests = obj(_fields(["openRateUnique", "clickRateUnique"], test))
    funnel: Spec = {
        **_fields(COUNTS, COUNT),
        "rates": obj(_fields(RATES, RATE)),
        "ratesHuman": obj(_fields(OPEN_CLICK_RATES, RATE)),
    }
    version = obj({"abVersion": STR, **funnel, "tests": tests, "testsHuman": tests})
    return obj(
        {
            **_fields(scope, STR),
            **(
                {"deliveryIds": {"type": "array", "items": STR}}
                if "deliveryId" not in scope
                else {}
            ),
            "versions": {"type": "array", "items": version},
            "unversioned": {"anyOf": [obj(funnel), {"type": "null"}]},
            "method": STR,
        }
    )


def named_event_echo() -> Spec:
    """The Event API's 201: the named event posted alone, as it was posted."""
    return {
        "type": "object",
        "required": ["name", "payload"],
        "properties": {"name": STR, "payload": {"type": "object"}},
    }


COMPONENTS: Spec = {
    # Any JSON without NUL characters (jsonb cannot store them).
    "Payload": {
        "anyOf": [
            {"type": ["null", "boolean", "number"]},
            {"type": "string", "pattern": NO_NUL},
            {"type": "array", "items": {"$ref": "#/components/schemas/Payload"}},
            {
                "type": "object",
                "propertyNames": {"pattern": NO_NUL},
                "additionalProperties": {"$ref": "#/components/schemas/Payload"},
            },
        ]
    },
    "TimeZone": {"type": "string", "enum": sorted(params.zones())},
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": STR,
            "message": STR,
            "details": {"type": "array", "items": {"type": "object"}},
        },
    },
}
