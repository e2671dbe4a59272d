"""What a call's bridge needs from Django, resolved once before the audio starts.

The bridge itself reads no settings and no models: everything arrives here as a frozen
`BridgeConfig` so the hot path never touches the ORM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.utils import timezone

from agents.models import AgentProfile
from agents.services import agent_prompt_values, agent_render_prompts
from callcenter.db import db_sync_to_async
from calls.campaigns.disclosure import opening_render
from calls.campaigns.models import Attempt, Campaign
from calls.models import CallSession
from calls.status import CallStatus
from realtime.call_tools import providers_for
from realtime.greeting_cache import GreetingCache, greeting_cache_for, greeting_key
from realtime.protocol.caller_audio import MULAW_8K, PCM16_24K, CallerAudioFormat
from realtime.protocol.greeting import CachedGreeting
from realtime.protocol.openai_events import (
    FunctionTool,
    SemanticVad,
    ServerVad,
    SessionConfig,
    Transcription,
)
from realtime.store import stream_call_find
from realtime.tool_providers import ToolProvider
from realtime.tools import tools_for

DEMO_API_KEY = "sk-demo-local"
GOODBYE_LINE = "お電話ありがとうございました。失礼いたします。"
IDLE_PROMPT = (
    "お客様からしばらく応答がありません。まだお電話がつながっているか、"
    "短く丁寧に確認してください。"
)
# Campaign calls (F-65): when the agent must put the number on the do-not-call list.
OPT_OUT_TOOL = "record_opt_out"
OPT_OUT_RULE = (
    "\n\n# 今後の電話のお断り(特定商取引法 第17条)\n"
    "お客様が今後の電話や勧誘をはっきり断ったとき(例:「もう電話しないで」"
    "「二度とかけないで」「結構です」「必要ありません」「迷惑です」)は、"
    "お客様の言葉をそのまま customer_words に入れて record_opt_out を呼び、"
    "お詫びを述べて通話を終えてください。その後は勧誘を続けないでください。"
    "「今は忙しい」「家族に相談する」「また今度」「後で」は断りではありません。"
    "その場合は record_opt_out を呼ばず、改めてお電話してよい日時を伺ってください。"
)
APOLOGY_LINE = "申し訳ございません。ただいまシステムに問題が発生しております。後ほどおかけ直しください。"


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    call_id: int
    organization_id: int
    caller_number: str
    session: SessionConfig
    greeting: str | None
    model_url: str
    api_key: str
    enabled_tools: tuple[str, ...]
    handoff_digit: str
    handoff_farewell: str
    on_model_failure: str
    max_duration_s: int
    idle_timeout_s: int
    # Back from a human, or a stream resumed after ours was lost (F-68): re-seed the
    # saved conversation and speak `greeting` (a note, or the resume line).
    resume: bool = False
    # Where this bridge's transcript offsets start: a resumed call goes on from its
    # earlier lines, so one transcript keeps its order.
    transcript_offset_ms: int = 0
    debug_realtime: bool = False
    debug_twilio: bool = False
    # The instant greeting (F-73): the cached audio to play at `start` (a hit), or
    # the cache and key that the live greeting's audio fills (a miss).
    cached_greeting: CachedGreeting | None = None
    greeting_cache: GreetingCache | None = None
    greeting_key: str | None = None
    # Tools beyond the built-ins (issue 18): MCP servers, HTTP tools.
    tool_providers: tuple[ToolProvider, ...] = ()
    # A supervisor who dropped while holding the call (F-75) gets this long to come
    # back before the AI holds it again.
    supervisor_grace_s: float = 5.0


def greeting_cache_lookup(
    *, agent: AgentProfile, text: str
) -> tuple[GreetingCache, str, CachedGreeting | None] | None:
    """The cache, key and cached audio of a phone call's rendered greeting `text`;
    None when the cache is off (GREETING_CACHE_SIZE 0)."""
    if settings.GREETING_CACHE_SIZE <= 0:
        return None
    cache = greeting_cache_for(
        settings.GREETING_CACHE_DIR, settings.GREETING_CACHE_SIZE
    )
    key = greeting_key(
        profile_id=agent.pk,
        voice=agent.voice,
        speed=agent.speed,
        model=agent.model,
        audio_format=MULAW_8K.realtime_type,
        text=text,
    )
    return cache, key, cache.get(key)


def session_config_for(
    *,
    agent: AgentProfile,
    instructions: str,
    enabled_tools: Sequence[str] | None = None,
    audio: CallerAudioFormat = MULAW_8K,
) -> SessionConfig:
    """The GA session an agent profile asks for (F-03, F-16).

    `enabled_tools` overrides the profile's list (a campaign call adds opt-out);
    `audio` is the caller transport's format (μ-law for the phone, PCM for the web).
    """
    turn_detection: ServerVad | SemanticVad | None
    if agent.turn_detection == AgentProfile.TurnDetection.SERVER_VAD:
        turn_detection = ServerVad(
            threshold=agent.vad_threshold,
            prefix_padding_ms=agent.vad_prefix_padding_ms,
            silence_duration_ms=agent.vad_silence_duration_ms,
            create_response=True,
            interrupt_response=agent.interrupt_response,
        )
    elif agent.turn_detection == AgentProfile.TurnDetection.SEMANTIC_VAD:
        turn_detection = SemanticVad(
            eagerness=agent.vad_eagerness,
            create_response=True,
            interrupt_response=agent.interrupt_response,
        )
    else:
        turn_detection = None
    transcription = (
        Transcription(
            model=agent.transcription_model,
            language=agent.transcription_language or None,
        )
        if agent.transcription_model
        else None
    )
    return SessionConfig(
        model=agent.model,
        instructions=instructions,
        voice=agent.voice,
        speed=agent.speed,
        turn_detection=turn_detection,
        transcription=transcription,
        noise_reduction=agent.noise_reduction or None,
        audio=audio,
        tools=tuple(
            FunctionTool(
                name=t.name, description=t.description, parameters=t.parameters
            )
            for t in tools_for(
                list(agent.enabled_tools if enabled_tools is None else enabled_tools)
            )
        ),
    )


def model_url(model: str) -> str:
    """The Realtime WebSocket URL with the model as a query parameter (PROTOCOL A1)."""
    base = settings.OPENAI_REALTIME_URL
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}{urlencode({'model': model})}"


def call_campaign(call: CallSession) -> tuple[Campaign, dict[str, Any]] | None:
    """The campaign a call dials for and its contact's prompt values, if any."""
    attempt = (
        Attempt.objects.select_related("contact__campaign").filter(call=call).first()
    )
    if attempt is None:
        return None
    values = attempt.contact.prompt_values()
    values.update(
        {k: v for k, v in (call.contact_variables or {}).items() if v not in (None, "")}
    )
    return attempt.contact.campaign, values


def resume_instruction(line: str) -> str | None:
    """What the model is told on a resumed stream: say the profile's short line,
    or nothing (blank line: it just listens)."""
    line = line.strip()
    if not line:
        return None
    return (
        "通話の音声が一時的に途切れ、いま再接続しました。会話の続きです。"
        f"最初に次のひとことだけをそのまま言い、お客様のお話を待ってください:「{line}」"
    )


def transcript_offset_ms(call: CallSession) -> int:
    """Milliseconds since the call was answered: where a new bridge's lines go on."""
    start = call.answered_at or call.created_at
    if start is None:
        return 0
    return max(int((timezone.now() - start).total_seconds() * 1000), 0)


@dataclass(frozen=True, slots=True)
class CallPrompts:
    """What the agent is told and may do on one call, whichever path speaks it:
    the Realtime bridge or the legacy Gather path (F-72)."""

    instructions: str
    greeting: str
    enabled_tools: tuple[str, ...]
    speaks_first: bool
    caller_number: str


def call_prompts(*, call: CallSession) -> CallPrompts:
    """Render the call's instructions and greeting and pick its tools.

    A campaign call (F-65, F-66) opens with the campaign's disclosure, rendered with
    the contact's values, before the agent's greeting; the AI speaks first; the
    opt-out rule is added to the instructions and `record_opt_out` to the tools.
    """
    agent = call.agent
    if agent is None:
        raise ValueError(f"call {call.pk} has no agent profile")
    campaign_and_values = call_campaign(call)
    variables = (
        campaign_and_values[1] if campaign_and_values else call.contact_variables
    )
    instructions, greeting = agent_render_prompts(
        agent=agent, contact_variables=variables
    )
    enabled_tools = list(agent.enabled_tools)
    # A web caller has just pressed "start call" and waits to be greeted.
    speaks_first = (
        call.direction in (CallSession.Direction.OUTBOUND, CallSession.Direction.WEB)
        or agent.ai_speaks_first
    )
    if campaign_and_values is not None:
        campaign = campaign_and_values[0]
        opening = opening_render(
            campaign,
            variables=agent_prompt_values(agent=agent, contact_variables=variables),
        )
        greeting = opening + greeting if greeting else opening
        instructions += OPT_OUT_RULE
        if OPT_OUT_TOOL not in enabled_tools:
            enabled_tools.append(OPT_OUT_TOOL)
        speaks_first = True
    return CallPrompts(
        instructions=instructions,
        greeting=greeting,
        enabled_tools=tuple(enabled_tools),
        speaks_first=speaks_first,
        # A web call's "number" is the customer the operator chose, if any.
        caller_number=call.from_number
        if call.direction in (CallSession.Direction.INBOUND, CallSession.Direction.WEB)
        else call.to_number,
    )


def bridge_config_build(*, call: CallSession) -> BridgeConfig:
    """Render the prompts and freeze everything the bridge needs for this call."""
    prompts = call_prompts(call=call)
    agent = call.agent
    assert agent is not None  # call_prompts refuses a call without one
    greeting, enabled_tools = prompts.greeting, list(prompts.enabled_tools)
    greeting_instruction = (
        f"通話が始まりました。最初に次の挨拶をそのまま言ってください:「{greeting}」"
        if prompts.speaks_first and greeting
        else None
    )
    resume = bool(call.ai_resume_note)
    if call.ai_resume_note:
        greeting_instruction = call.ai_resume_note
    elif call.stream_lost_at is not None and call.status == CallStatus.AI_RESPONDING:
        resume = True
        greeting_instruction = resume_instruction(agent.resume_message)
    web = call.direction == CallSession.Direction.WEB
    # A phone call that opens with its greeting: played from the cache when there.
    lookup = (
        greeting_cache_lookup(agent=agent, text=greeting)
        if greeting_instruction is not None and greeting and not resume and not web
        else None
    )
    return BridgeConfig(
        call_id=call.pk,
        organization_id=call.organization_id,
        caller_number=prompts.caller_number,
        session=session_config_for(
            agent=agent,
            instructions=prompts.instructions,
            enabled_tools=enabled_tools,
            audio=PCM16_24K if web else MULAW_8K,
        ),
        greeting=greeting_instruction,
        model_url=model_url(agent.model),
        api_key=settings.OPENAI_API_KEY or DEMO_API_KEY,
        enabled_tools=tuple(enabled_tools),
        handoff_digit=agent.handoff_dtmf_digit,
        handoff_farewell=agent.handoff_farewell,
        on_model_failure=agent.on_model_failure,
        max_duration_s=agent.max_call_duration_s,
        idle_timeout_s=agent.idle_timeout_s,
        resume=resume,
        transcript_offset_ms=transcript_offset_ms(call) if resume else 0,
        debug_realtime=settings.DEBUG_REALTIME,
        debug_twilio=settings.DEBUG_TWILIO,
        supervisor_grace_s=settings.SUPERVISOR_GRACE_S,
        cached_greeting=lookup[2] if lookup else None,
        greeting_cache=lookup[0] if lookup else None,
        greeting_key=lookup[1] if lookup else None,
        tool_providers=tuple(
            providers_for(
                mcp_servers=agent.mcp_servers or [],
                http_tools=agent.http_tools or [],
                allow_private=settings.ALLOW_PRIVATE_URLS,
            )
        ),
    )


abridge_config_build = db_sync_to_async(bridge_config_build)


def stream_call_setup(call_id: int) -> tuple[CallSession, BridgeConfig] | None:
    """The call and its bridge's config if it may start a media stream now, else
    None; ValueError (or any error) if it may but cannot be configured.

    The stream connect's database work, in one trip to a DB thread.
    """
    call = stream_call_find(call_id)
    if call is None:
        return None
    return call, bridge_config_build(call=call)


astream_call_setup = db_sync_to_async(stream_call_setup, lane="setup")
