"""What leaves the notifications domain over HTTP."""
from __future__ import annotations

from typing import Any

from functions.core import clock
from functions.notifications.model import Consent, TemplateRegistry


def consent_view(consent: Consent, templates: TemplateRegistry) -> dict[str, Any]:
    config = templates.get(consent.template)
    return {"template": consent.template, "template_id": config.template_id if config else None,
            "available": consent.available, "accepted_total": consent.accepted_total,
            "refused_total": consent.refused_total,
            "updated_at": clock.isoformat(consent.updated_at) if consent.updated_at else None}
