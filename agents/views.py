"""Agent settings pages (F-39), the live prompt preview and the legacy conversion (F-05).

Views validate with a form, call one service (`agent_profile_save`) and render. Reads
go through `agents.selectors.agent_list`, so another organisation's agent is a 404.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents.forms import (
    LANGUAGE_SUGGESTIONS,
    AgentProfileForm,
    LegacyPitchForm,
    TemplatePreviewForm,
    preview_values,
)
from agents.models import AgentProfile
from agents.prompts import KNOWN_VARIABLES, SAMPLE_VALUES, render_template
from agents.selectors import agent_list
from agents.services import agent_profile_save
from agents.tool_test import tools_test
from calls.path_figures import path_figures
from realtime.http_tools import host_of

# The agent page compares the two speech paths over this span (F-72).
PATH_FIGURES_SPAN = timedelta(days=30)


def _get_agent_or_404(request: HttpRequest, pk: int) -> AgentProfile:
    try:
        return agent_list(user=request.user).get(pk=pk)
    except AgentProfile.DoesNotExist:
        raise Http404("No such agent") from None


@login_required
@require_GET
def agent_list_page(request: HttpRequest) -> HttpResponse:
    """The organisation's agent profiles."""
    return render(
        request, "agents/agent_list.html", {"agents": agent_list(user=request.user)}
    )


def _settings_context(
    agent: AgentProfile, form: AgentProfileForm, legacy_form: LegacyPitchForm
) -> dict[str, object]:
    since = timezone.now() - PATH_FIGURES_SPAN
    return {
        "agent": agent,
        "paths": path_figures(agent.calls.filter(created_at__gte=since)),
        "paths_days": PATH_FIGURES_SPAN.days,
        "form": form,
        "legacy_form": legacy_form,
        "variables": KNOWN_VARIABLES,
        "sample_values": SAMPLE_VALUES,
        "language_suggestions": LANGUAGE_SUGGESTIONS,
        "enabled_tool_rows": _enabled_tools(agent),
    }


@login_required
@require_http_methods(["GET", "POST"])
def agent_settings(request: HttpRequest, pk: int) -> HttpResponse:
    """Show and save every setting of one agent profile (F-39)."""
    agent = _get_agent_or_404(request, pk)
    form = AgentProfileForm(request.POST or None, instance=agent)
    if request.method == "POST" and form.is_valid():
        agent_profile_save(agent=form.save(commit=False))
        messages.success(request, _("設定を保存しました。"))
        return redirect("agents:detail", pk=agent.pk)
    status = 400 if form.is_bound else 200
    return render(
        request,
        "agents/agent_settings.html",
        _settings_context(agent, form, LegacyPitchForm(agent=agent)),
        status=status,
    )


@login_required
@require_POST
def template_preview(request: HttpRequest) -> JsonResponse:
    """Render a template with sample values through agents.prompts (the one renderer).

    Replies `{"ok": true, "rendered": …}` or `{"ok": false, "error": …}` naming the
    unknown variables.
    """
    form = TemplatePreviewForm(request.POST)
    if not form.is_valid():
        return JsonResponse(
            {
                "ok": False,
                "error": " ".join(form.errors.get("template", [_("不正な入力です。")])),
            },
            status=400,
        )
    return JsonResponse(form.preview())


@login_required
@require_POST
def tools_test_view(request: HttpRequest, pk: int) -> JsonResponse:
    """The "接続テスト" button (F-78): `kind` (mcp|http) and the section's JSON `config`.

    Replies `{"ok", "error"?, "results": [{"name", "ok", "message", "tools"}]}`.
    """
    agent = _get_agent_or_404(request, pk)
    result = tools_test(
        agent=agent,
        kind=request.POST.get("kind", ""),
        text=request.POST.get("config", "")[:100_000],
    )
    return JsonResponse(result, status=200 if "error" not in result else 400)


def _enabled_tools(agent: AgentProfile) -> list[dict[str, str]]:
    """Built-in, MCP and HTTP tools of the saved profile, for the page's one list."""
    rows = [
        {"kind": "built-in", "name": name, "where": ""}
        for name in agent.enabled_tools or []
    ]
    for server in agent.mcp_servers or []:
        names = server.get("allowed_tools") or ["*"]
        rows += [{"kind": "mcp", "name": n, "where": server["name"]} for n in names]
    for tool in agent.http_tools or []:
        rows.append(
            {"kind": "http", "name": tool["name"], "where": host_of(tool["url"])}
        )
    return rows


@login_required
@require_POST
def legacy_convert(request: HttpRequest, pk: int) -> HttpResponse:
    """Convert a structured pitch: preview before/after, apply only on confirm (F-05)."""
    agent = _get_agent_or_404(request, pk)
    legacy_form = LegacyPitchForm(request.POST, agent=agent)
    if not legacy_form.is_valid():
        return render(
            request,
            "agents/agent_settings.html",
            _settings_context(agent, AgentProfileForm(instance=agent), legacy_form),
            status=400,
        )
    after = legacy_form.instructions_template()
    updates = legacy_form.profile_updates()
    if request.POST.get("confirm") == "1":
        agent.instructions_template = after
        for name, value in updates.items():
            setattr(agent, name, value)
        agent_profile_save(agent=agent)
        messages.success(request, _("既存設定から生成した指示を適用しました。"))
        return redirect("agents:detail", pk=agent.pk)
    values = preview_values({**agent.profile_variables(), **updates})
    return render(
        request,
        "agents/legacy_preview.html",
        {
            "agent": agent,
            "legacy_form": legacy_form,
            "before": agent.instructions_template,
            "after": after,
            "before_rendered": _render_or_none(agent.instructions_template, values),
            "after_rendered": render_template(after, values),
        },
    )


def _render_or_none(template: str, values: dict[str, object]) -> str | None:
    try:
        return render_template(template, values)
    except ValueError:
        return None
