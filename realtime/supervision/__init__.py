"""Supervisors on a live call (F-75): listen to both sides, microphones back in.

See ``hub.Supervision``. Nothing in this package imports Django.
"""

from realtime.supervision.hub import OfferRefused, Supervision, SupervisionHost

__all__ = ["OfferRefused", "Supervision", "SupervisionHost"]
