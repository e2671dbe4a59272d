"""Channels group names, in one place so senders and listeners agree."""

from __future__ import annotations


def call_control_group(call_id: object) -> str:
    """The group the call's bridge consumer listens on for control (F-23)."""
    return f"call.{call_id}"


def call_monitor_group(call_id: object) -> str:
    """The group monitor pages of one call listen on (F-20, F-37)."""
    return f"monitor.call.{call_id}"


def org_monitor_group(organization_id: object) -> str:
    """The group the organisation's dashboards listen on (F-36)."""
    return f"monitor.org.{organization_id}"


def campaign_monitor_group(campaign_id: object) -> str:
    """The group a campaign's page listens on for progress (F-48, F-67)."""
    return f"monitor.campaign.{campaign_id}"


def org_jobs_group(organization_id: object) -> str:
    """The group the organisation's jobs and dashboard pages hear job cards on (F-77)."""
    return f"jobs.org.{organization_id}"
