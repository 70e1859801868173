"""The provider registry: one module per provider, each exposing `ADAPTER`.

The name is the module, the URL segment (`/webhooks/{name}/{account}`), `Event.source`, the
fixtures folder and the test module. Adding a provider: see ADDING_A_PROVIDER.md.
"""

from __future__ import annotations

import importlib

from service.webhooks.base import Adapter

PROVIDER_MODULES: tuple[str, ...] = (
    "sendgrid",
    "mailgun",
    "ses",
    "postmark",
    "sparkpost",
    "mandrill",
    "mailjet",
    "brevo",
    "resend",
    "standard_webhooks",
    "postal",
    "inwise",
)


def _load() -> dict[str, Adapter]:
    adapters: dict[str, Adapter] = {}
    for name in PROVIDER_MODULES:
        adapter: Adapter = importlib.import_module(f"service.webhooks.{name}").ADAPTER
        # A module name cannot hold a dash: standard_webhooks.py serves `standard-webhooks`.
        assert adapter.name == name.replace("_", "-"), f"{name}: ADAPTER.name is {adapter.name!r}"
        adapters[adapter.name] = adapter
    return adapters


PROVIDERS: dict[str, Adapter] = _load()
