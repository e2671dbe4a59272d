"""Organisations, operators, phone numbers, agent profiles, customers, appointments."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from agents.extraction_schema import check_extraction_schema, default_extraction_schema
from agents.mcp_config import mcp_servers_clean
from agents.phones import PhoneNumberField
from agents.prompts import validate_template

# GA voices and speed range (PROTOCOL A2).
VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
SPEED_MIN, SPEED_MAX = 0.25, 1.5
MODELS = ("gpt-realtime", "gpt-realtime-mini")
TRANSCRIPTION_MODELS = ("gpt-4o-transcribe", "gpt-4o-mini-transcribe", "whisper-1")
# The legacy Gather path (F-72): Twilio <Say> voices that speak ja-JP, and the
# <Gather> speech models (Twilio's generic ones and Google's v2 models, which
# take ja-JP). An unknown or foreign voice is refused on the settings page.
SAY_LANGUAGE = "ja-JP"
SAY_VOICES = (
    "Polly.Mizuki",
    "Polly.Takumi",
    "Polly.Kazuha-Neural",
    "Polly.Tomoko-Neural",
    "Polly.Takumi-Neural",
    "Google.ja-JP-Standard-A",
    "Google.ja-JP-Standard-B",
    "Google.ja-JP-Standard-C",
    "Google.ja-JP-Standard-D",
    "Google.ja-JP-Wavenet-A",
    "Google.ja-JP-Wavenet-B",
    "Google.ja-JP-Wavenet-C",
    "Google.ja-JP-Wavenet-D",
    "Google.ja-JP-Neural2-B",
    "Google.ja-JP-Neural2-C",
    "Google.ja-JP-Neural2-D",
)
GATHER_SPEECH_MODELS = (
    "",  # Twilio chooses (and fails over between providers)
    "default",
    "phone_call",
    "experimental_conversations",
    "experimental_utterances",
    "googlev2_telephony",
    "googlev2_long",
    "googlev2_short",
)
TEXT_MODELS = ("gpt-4.1-mini", "gpt-4.1")
TOOL_NAMES = (
    "request_operator_handoff",
    "get_customer_info",
    "schedule_appointment",
    "end_call",
    "save_call_outcome",
    "record_opt_out",
)


class Organization(models.Model):
    """A company running lines on the service; everything else belongs to one."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("organisation")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Operator(AbstractUser):
    """A person using the service; sees only their organisation (superusers see all)."""

    organization = models.ForeignKey(
        Organization,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="operators",
        verbose_name=_("organisation"),
    )
    phone_number = PhoneNumberField(
        _("phone number"), blank=True, help_text=_("Where handoffs you request ring.")
    )

    class Meta:
        verbose_name = _("operator")


class AgentProfile(models.Model):
    """A sales pitch and the Realtime settings that voice it (F-03)."""

    class TurnDetection(models.TextChoices):
        SERVER_VAD = "server_vad", "server_vad"
        SEMANTIC_VAD = "semantic_vad", "semantic_vad"
        NONE = "none", _("off")

    class Eagerness(models.TextChoices):
        LOW = "low", "low"
        MEDIUM = "medium", "medium"
        HIGH = "high", "high"
        AUTO = "auto", "auto"

    class NoiseReduction(models.TextChoices):
        NONE = "", _("off")
        NEAR = "near_field", "near_field"
        FAR = "far_field", "far_field"

    class Unavailable(models.TextChoices):
        BACK_TO_AI = "back-to-ai", _("back to the AI, saying no one is free")
        TAKE_MESSAGE = "take-message", _("the AI takes a message")

    class ModelFailure(models.TextChoices):
        HANDOFF = "handoff", _("hand off to a human")
        HANG_UP = "hang-up", _("apologise and hang up")

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="agents"
    )
    name = models.CharField(_("name"), max_length=200)
    realtime_enabled = models.BooleanField(_("Realtime on"), default=True)
    model = models.CharField(
        _("model"), max_length=40, choices=[(m, m) for m in MODELS], default=MODELS[0]
    )
    voice = models.CharField(
        _("voice"), max_length=20, choices=[(v, v) for v in VOICES], default="marin"
    )
    speed = models.FloatField(
        _("speed"),
        default=1.0,
        validators=[MinValueValidator(SPEED_MIN), MaxValueValidator(SPEED_MAX)],
    )
    instructions_template = models.TextField(_("instructions"))
    greeting_template = models.TextField(_("greeting"), blank=True)
    ai_speaks_first = models.BooleanField(
        _("AI speaks first on inbound calls"), default=True
    )
    language = models.CharField(_("language"), max_length=10, default="ja")

    turn_detection = models.CharField(
        _("turn detection"),
        max_length=20,
        choices=TurnDetection.choices,
        default=TurnDetection.SERVER_VAD,
    )
    vad_threshold = models.FloatField(
        default=0.5, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    vad_prefix_padding_ms = models.PositiveIntegerField(
        default=300, validators=[MaxValueValidator(5000)]
    )
    vad_silence_duration_ms = models.PositiveIntegerField(
        default=500, validators=[MinValueValidator(100), MaxValueValidator(10000)]
    )
    vad_eagerness = models.CharField(
        max_length=10, choices=Eagerness.choices, default=Eagerness.AUTO
    )
    interrupt_response = models.BooleanField(default=True)
    transcription_model = models.CharField(
        max_length=40,
        choices=[(m, m) for m in TRANSCRIPTION_MODELS],
        default="gpt-4o-transcribe",
        blank=True,
    )
    transcription_language = models.CharField(max_length=10, default="ja", blank=True)
    noise_reduction = models.CharField(
        max_length=20,
        choices=NoiseReduction.choices,
        default=NoiseReduction.NEAR,
        blank=True,
    )
    enabled_tools = models.JSONField(_("enabled tools"), default=list, blank=True)
    # The business's own tools (F-78), validated by agents.mcp_config and
    # agents.http_tools_config; secrets inside are write-only (agents.tool_masking).
    mcp_servers = models.JSONField(_("MCP servers"), default=list, blank=True)
    http_tools = models.JSONField(_("HTTP tools"), default=list, blank=True)

    # Prompt variables of the profile (F-04); company_name falls back to the organisation.
    company_name = models.CharField(max_length=200, blank=True)
    service_name = models.CharField(max_length=200, blank=True)
    representative_name = models.CharField(max_length=200, blank=True)
    self_introduction = models.TextField(blank=True)
    service_description = models.TextField(blank=True)

    # Handoff and limits.
    handoff_phone_number = PhoneNumberField(_("handoff phone number"), blank=True)
    handoff_dtmf_digit = models.CharField(
        _("keypad digit that requests a human"), max_length=1, blank=True, default="0"
    )
    handoff_farewell = models.CharField(
        _("farewell line before handoff"),
        max_length=300,
        blank=True,
        default="担当者にお繋ぎします。少々お待ちください。",
    )
    on_agent_unavailable = models.CharField(
        max_length=20, choices=Unavailable.choices, default=Unavailable.BACK_TO_AI
    )
    return_to_ai_after_agent = models.BooleanField(
        _("back to the AI after the human leaves"), default=False
    )
    on_model_failure = models.CharField(
        max_length=20, choices=ModelFailure.choices, default=ModelFailure.HANDOFF
    )
    # Said when a call comes back on a new stream after ours broke (F-68); blank:
    # the AI just listens.
    resume_message = models.CharField(
        _("line after a resumed stream"),
        max_length=300,
        blank=True,
        default="お待たせいたしました。",
    )
    voicemail_message = models.TextField(_("voicemail message"), blank=True)
    max_call_duration_s = models.PositiveIntegerField(
        _("max call duration (s)"), default=900, validators=[MinValueValidator(10)]
    )
    idle_timeout_s = models.PositiveIntegerField(
        _("idle timeout (s)"), default=30, validators=[MinValueValidator(5)]
    )
    rollout_percentage = models.PositiveSmallIntegerField(
        _("rollout %"), default=100, validators=[MaxValueValidator(100)]
    )
    # The legacy Gather path (F-72): used outside the rollout, when Realtime is off
    # for the profile, and when OpenAI Realtime refuses new sessions (F-71).
    legacy_text_model = models.CharField(
        _("legacy text model"),
        max_length=40,
        choices=[(m, m) for m in TEXT_MODELS],
        default=TEXT_MODELS[0],
    )
    legacy_say_voice = models.CharField(
        _("legacy <Say> voice"),
        max_length=40,
        choices=[(v, v) for v in SAY_VOICES],
        default="Polly.Mizuki",
    )
    legacy_speech_model = models.CharField(
        _("legacy speech model"),
        max_length=40,
        choices=[(m, m or _("Twilio's choice")) for m in GATHER_SPEECH_MODELS],
        default="phone_call",
        blank=True,
    )
    legacy_timeout_s = models.PositiveSmallIntegerField(
        _("seconds to wait for the caller to speak"),
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(60)],
    )
    legacy_speech_timeout = models.CharField(
        _("speech end timeout"),
        max_length=4,
        default="auto",
        help_text=_("auto, or whole seconds of silence that end the caller's turn."),
    )
    legacy_hints = models.CharField(
        _("speech hints"),
        max_length=1000,
        blank=True,
        help_text=_("Comma-separated words and phrases the caller is likely to say."),
    )
    legacy_action_on_empty_result = models.BooleanField(
        _("ask again when nothing was heard"), default=True
    )
    # The web voice channel (F-74): a public page /talk/<public_id>/ when enabled.
    public_web_calls = models.BooleanField(
        _("public web calls (/talk/ page, no login)"), default=False
    )
    public_web_max_calls = models.PositiveSmallIntegerField(
        _("max simultaneous public web calls"),
        default=2,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
    )
    # After the call (F-76): the fields the text model extracts, as JSON Schema.
    extraction_schema = models.JSONField(
        _("extraction schema (JSON Schema)"), default=default_extraction_schema
    )
    public_id = models.CharField(
        _("public id"),
        max_length=32,
        unique=True,
        null=True,
        blank=True,
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("agent profile")
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"], name="agent_name_per_org"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, list[ValidationError]] = {}
        for field in ("instructions_template", "greeting_template"):
            try:
                validate_template(getattr(self, field))
            except ValidationError as exc:
                errors.setdefault(field, []).append(exc)
        speech_timeout = (self.legacy_speech_timeout or "").strip()
        if speech_timeout != "auto" and not (
            speech_timeout.isascii()
            and speech_timeout.isdigit()
            and 1 <= int(speech_timeout) <= 60
        ):
            errors.setdefault("legacy_speech_timeout", []).append(
                ValidationError(_("Give auto or whole seconds from 1 to 60."))
            )
        hints = [h.strip() for h in (self.legacy_hints or "").split(",")]
        if any(len(h) > 100 for h in hints):
            errors.setdefault("legacy_hints", []).append(
                ValidationError(_("Each hint may be at most 100 characters."))
            )
        unknown_tools = [t for t in self.enabled_tools or [] if t not in TOOL_NAMES]
        if not isinstance(self.enabled_tools, list) or unknown_tools:
            errors.setdefault("enabled_tools", []).append(
                ValidationError(
                    _("Unknown tool(s): %(names)s."),
                    params={"names": ", ".join(map(str, unknown_tools))},
                )
            )
        try:
            check_extraction_schema(self.extraction_schema)
        except ValidationError as exc:
            errors.setdefault("extraction_schema", []).append(exc)
        self._clean_business_tools(errors)
        if errors:
            raise ValidationError(errors)

    def _clean_business_tools(self, errors: dict[str, list[ValidationError]]) -> None:
        from agents.http_tools_config import http_tools_clean, names_clash_check

        try:
            self.mcp_servers = mcp_servers_clean(self.mcp_servers)
        except ValidationError as exc:
            errors.setdefault("mcp_servers", []).append(exc)
        try:
            self.http_tools = http_tools_clean(
                self.http_tools, builtin_names=TOOL_NAMES
            )
            names_clash_check(self.http_tools, self.mcp_servers)
        except ValidationError as exc:
            errors.setdefault("http_tools", []).append(exc)

    def profile_variables(self) -> dict[str, str]:
        """Return the profile's prompt variable values (F-04)."""
        return {
            "company_name": self.company_name or self.organization.name,
            "service_name": self.service_name,
            "representative_name": self.representative_name,
            "self_introduction": self.self_introduction,
            "service_description": self.service_description,
        }


class PhoneNumber(models.Model):
    """An E.164 number that rings this service, routed to an agent (F-02)."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="phone_numbers"
    )
    number = PhoneNumberField(_("number"), unique=True)
    label = models.CharField(_("label"), max_length=200, blank=True)
    agent = models.ForeignKey(
        AgentProfile,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="phone_numbers",
        verbose_name=_("default agent"),
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        verbose_name = _("phone number")
        ordering = ["number"]

    def __str__(self) -> str:
        return self.number

    def clean(self) -> None:
        if self.agent_id and self.agent.organization_id != self.organization_id:
            raise ValidationError(
                {"agent": _("The agent belongs to another organisation.")}
            )


class Customer(models.Model):
    """Someone the organisation talks to (F-06)."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="customers"
    )
    phone_number = PhoneNumberField(_("phone number"))
    name = models.CharField(_("name"), max_length=200, blank=True)
    context = models.JSONField(_("context"), default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("customer")
        ordering = ["name", "phone_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "phone_number"], name="customer_phone_per_org"
            )
        ]

    def __str__(self) -> str:
        return self.name or self.phone_number


class Appointment(models.Model):
    """A booking, usually made by the agent's tool during a call (F-07)."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="appointments"
    )
    customer = models.ForeignKey(
        Customer,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="appointments",
    )
    call = models.ForeignKey(
        "calls.CallSession",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="appointments",
    )
    date = models.DateField(_("date"))
    time = models.TimeField(_("time"))
    name = models.CharField(_("name"), max_length=200)
    notes = models.TextField(_("notes"), blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("appointment")
        ordering = ["date", "time"]

    def __str__(self) -> str:
        return f"{self.date} {self.time:%H:%M} {self.name}"
