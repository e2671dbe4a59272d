"""What a call's bridge needs from Django, resolved once before the audio starts.

The bridge itself reads no settings and no models: everything arrives here as a frozen
`BridgeConfig` so the hot path never touches the ORM.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from channels.db import database_sync_to_async
from django.conf import settings

from agents.models import AgentProfile
from agents.services import agent_render_prompts
from calls.models import CallSession
from realtime.protocol.openai_events import (
    FunctionTool,
    SemanticVad,
    ServerVad,
    SessionConfig,
    Transcription,
)
from realtime.tools import tools_for

DEMO_API_KEY = "sk-demo-local"
GOODBYE_LINE = "お電話ありがとうございました。失礼いたします。"
IDLE_PROMPT = (
    "お客様からしばらく応答がありません。まだお電話がつながっているか、"
    "短く丁寧に確認してください。"
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
    # Back from a human: re-seed the saved conversation and speak `greeting` (a note).
    resume: bool = False
    debug_realtime: bool = False
    debug_twilio: bool = False


def session_config_for(*, agent: AgentProfile, instructions: str) -> SessionConfig:
    """The GA session an agent profile asks for (F-03, F-16)."""
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
        tools=tuple(
            FunctionTool(
                name=t.name, description=t.description, parameters=t.parameters
            )
            for t in tools_for(agent.enabled_tools)
        ),
    )


def model_url(model: str) -> str:
    """The Realtime WebSocket URL with the model as a query parameter (PROTOCOL A1)."""
    base = settings.OPENAI_REALTIME_URL
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}{urlencode({'model': model})}"


def bridge_config_build(*, call: CallSession) -> BridgeConfig:
    """Render the prompts and freeze everything the bridge needs for this call."""
    agent = call.agent
    if agent is None:
        raise ValueError(f"call {call.pk} has no agent profile")
    instructions, greeting = agent_render_prompts(
        agent=agent, contact_variables=call.contact_variables
    )
    speaks_first = (
        call.direction == CallSession.Direction.OUTBOUND or agent.ai_speaks_first
    )
    greeting_instruction = (
        f"通話が始まりました。最初に次の挨拶をそのまま言ってください:「{greeting}」"
        if speaks_first and greeting
        else None
    )
    if call.ai_resume_note:
        greeting_instruction = call.ai_resume_note
    return BridgeConfig(
        call_id=call.pk,
        organization_id=call.organization_id,
        caller_number=call.from_number
        if call.direction == CallSession.Direction.INBOUND
        else call.to_number,
        session=session_config_for(agent=agent, instructions=instructions),
        greeting=greeting_instruction,
        model_url=model_url(agent.model),
        api_key=settings.OPENAI_API_KEY or DEMO_API_KEY,
        enabled_tools=tuple(agent.enabled_tools),
        handoff_digit=agent.handoff_dtmf_digit,
        handoff_farewell=agent.handoff_farewell,
        on_model_failure=agent.on_model_failure,
        max_duration_s=agent.max_call_duration_s,
        idle_timeout_s=agent.idle_timeout_s,
        resume=bool(call.ai_resume_note),
        debug_realtime=settings.DEBUG_REALTIME,
        debug_twilio=settings.DEBUG_TWILIO,
    )


abridge_config_build = database_sync_to_async(bridge_config_build)
