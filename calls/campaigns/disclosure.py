"""The opening disclosure rule (特定商取引法 第16条 氏名等の明示, F-66).

A campaign call must say, first, who calls (the business and the caller's name),
what it is about (the product) and that it is a sales call. A campaign whose opening
cannot say all of that is not started.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings

from agents.prompts import PLACEHOLDER, render_template
from calls.campaigns.models import Campaign

DISCLOSURE_FIELDS = ("business_name", "caller_name", "product")


def disclosure_values(campaign: Campaign) -> dict[str, str]:
    """The three disclosure values, as the opening template sees them."""
    return {
        name: str(getattr(campaign, name) or "").strip() for name in DISCLOSURE_FIELDS
    }


def opening_render(
    campaign: Campaign, *, variables: dict[str, object] | None = None
) -> str:
    """Render the campaign's opening with its disclosure values and contact variables."""
    values: dict[str, object] = {**(variables or {}), **disclosure_values(campaign)}
    return render_template(campaign.opening, values)


def disclosure_missing(
    campaign: Campaign, *, purpose_phrases: Sequence[str] | None = None
) -> list[str]:
    """Name what the opening lacks; empty when the campaign may start.

    Each of `business_name`, `caller_name`, `product` must be set and appear in the
    rendered opening, and the opening must carry a purpose phrase
    (`DISCLOSURE_PURPOSE_PHRASES`). A template that does not render is `opening`.
    """
    phrases = list(
        settings.DISCLOSURE_PURPOSE_PHRASES
        if purpose_phrases is None
        else purpose_phrases
    )
    values = disclosure_values(campaign)
    missing = [name for name, value in values.items() if not value]
    # Contact variables are checked per contact at import; here only the disclosure
    # counts, so any other variable renders as nothing.
    rendered = PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), campaign.opening)
    for name, value in values.items():
        if value and value not in rendered:
            missing.append(name)
    if not any(phrase and phrase in rendered for phrase in phrases):
        missing.append("purpose")
    return missing
