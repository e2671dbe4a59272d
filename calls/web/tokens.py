"""The short-lived signed token a public /talk/ page presents with its offer."""

from __future__ import annotations

from django.conf import settings
from django.core import signing

SALT = "calls.web.public-talk"


class PublicTokenInvalid(Exception):
    """The token is forged, for another agent, or expired (``expired`` says which)."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


def public_token_issue(*, public_id: str) -> str:
    """A token for one agent's public page, valid PUBLIC_WEB_TOKEN_MAX_AGE seconds."""
    return signing.TimestampSigner(salt=SALT).sign(public_id)


def public_token_check(*, token: str, public_id: str) -> None:
    """Raise PublicTokenInvalid unless ``token`` was issued for ``public_id`` lately."""
    signer = signing.TimestampSigner(salt=SALT)
    try:
        value = signer.unsign(token, max_age=settings.PUBLIC_WEB_TOKEN_MAX_AGE)
    except signing.SignatureExpired:
        raise PublicTokenInvalid("the page's token has expired", expired=True) from None
    except signing.BadSignature:
        raise PublicTokenInvalid("the page's token is not valid") from None
    if value != public_id:
        raise PublicTokenInvalid("the page's token is for another agent")
