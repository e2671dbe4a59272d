"""Operators' call pages: dashboard, list, monitor/detail, hang-up and instruct (F-36…F-38).

Views only validate, call one service or selector, and render. Every view requires
login and reads through `calls.selectors`, so another organisation's call is a 404.
A call's recordings play through `recording_audio`, which streams the stored file or
Twilio's audio (fetched with the account's credentials) to the page's `<audio>`.
"""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, time, timedelta
from pathlib import PurePosixPath
from typing import Any

from asgiref.sync import sync_to_async
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy
from django.views.decorators.http import require_GET, require_POST

from agents.models import Operator
from agents.phones import mask_phone
from agents.selectors import agent_list
from callcenter.errors import ApplicationError
from calls.campaigns.models import DoNotCall
from calls.campaigns.services import dnc_add_from_call
from calls.control import CallNotLive, call_hangup_request, call_instruct
from calls.figures import figures_for, latency_mean_p95
from calls.models import CallSession, Recording
from calls.path_figures import path_figures
from calls.selectors import (
    call_get,
    call_list,
    call_supervision_history,
    call_supervision_state,
    calls_today,
)
from calls.status import LIVE, TERMINAL, CallStatus
from calls.summary.views import summary_context
from calls.timeline import event_text
from calls.twilio_client import TwilioError, twilio_recording_fetch

INSTRUCTION_MAX_CHARS = 2000
FILE_CHUNK_BYTES = 64 * 1024
RECORDING_CACHE_CONTROL = "private, max-age=300"


# --- Dashboard (F-36) ---------------------------------------------------------------


def status_labels() -> dict[str, str]:
    """Translated status labels for the pages' scripts."""
    return {value: str(label) for value, label in CallStatus.choices}


def _live_calls(request: HttpRequest) -> QuerySet[CallSession]:
    return call_list(user=request.user).filter(status__in=LIVE)


def _today(request: HttpRequest) -> dict[str, Any]:
    calls = calls_today(user=request.user)
    figures, charts = figures_for(calls)
    return {"figures": figures, "charts": charts, "paths": path_figures(calls)}


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """Live calls, today's figures and charts (F-36)."""
    return render(
        request,
        "calls/dashboard.html",
        {
            "live_calls": _live_calls(request),
            "status_labels": status_labels(),
            **_today(request),
        },
    )


@login_required
@require_GET
def today_fragment(request: HttpRequest) -> HttpResponse:
    """Today's figures and chart data alone, refetched as calls start and end."""
    return render(request, "calls/_today.html", _today(request))


@login_required
@require_GET
def live_calls_fragment(request: HttpRequest) -> HttpResponse:
    """The dashboard's live-calls table alone, refetched when a new call appears."""
    return render(
        request, "calls/_live_calls.html", {"live_calls": _live_calls(request)}
    )


# --- List with filters --------------------------------------------------------------


class CallFilterForm(forms.Form):
    status = forms.ChoiceField(
        label=gettext_lazy("状態"),
        required=False,
        choices=[("", gettext_lazy("すべて")), *CallStatus.choices],
    )
    direction = forms.ChoiceField(
        label=gettext_lazy("方向"),
        required=False,
        choices=[("", gettext_lazy("すべて")), *CallSession.Direction.choices],
    )
    date = forms.DateField(
        label=gettext_lazy("日付"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    agent = forms.ModelChoiceField(
        label=pgettext_lazy("one agent", "エージェント"),
        required=False,
        queryset=None,
        empty_label=gettext_lazy("すべて"),
    )
    number = forms.CharField(
        label=gettext_lazy("電話番号"),
        required=False,
        max_length=32,
        widget=forms.TextInput(attrs={"inputmode": "tel", "placeholder": "+81…"}),
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["agent"].queryset = agent_list(user=user)  # type: ignore[attr-defined]

    def filter(self, calls: QuerySet[CallSession]) -> QuerySet[CallSession]:
        if not self.is_valid():
            return calls
        data = self.cleaned_data
        if data["status"]:
            calls = calls.filter(status=data["status"])
        if data["direction"]:
            calls = calls.filter(direction=data["direction"])
        if data["date"]:
            start = timezone.make_aware(datetime.combine(data["date"], time.min))
            calls = calls.filter(
                created_at__gte=start, created_at__lt=start + timedelta(days=1)
            )
        if data["agent"]:
            calls = calls.filter(agent=data["agent"])
        if data["number"]:
            digits = data["number"].strip().replace("-", "").replace(" ", "")
            calls = calls.filter(
                Q(from_number__contains=digits) | Q(to_number__contains=digits)
            )
        return calls


@login_required
@require_GET
def call_list_page(request: HttpRequest) -> HttpResponse:
    """All calls of the organisation, filtered and paginated."""
    form = CallFilterForm(request.GET or None, user=request.user)
    calls = form.filter(call_list(user=request.user))
    page = Paginator(calls, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "calls/call_list.html",
        {"form": form, "page": page, "query": query.urlencode()},
    )


# --- Monitor (live) and detail (after) -------------------------------------------


def _get_call_or_404(request: HttpRequest, pk: int) -> CallSession:
    try:
        return call_get(user=request.user, call_id=pk)
    except CallSession.DoesNotExist:
        raise Http404("No such call") from None


@login_required
@require_GET
def call_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The monitor while the call is live (F-37), its record afterwards (F-38)."""
    call = _get_call_or_404(request, pk)
    transcript = list(call.transcript.all())
    for entry in transcript:
        entry.offset_label = offset_label(entry.offset_ms)  # type: ignore[attr-defined]
    events = list(call.events.all())
    for event in events:
        event.text = event_text(event.type, event.payload)  # type: ignore[attr-defined]
        # The raw payload, behind the line's "details" toggle.
        event.payload_json = json.dumps(event.payload, ensure_ascii=False, indent=2)  # type: ignore[attr-defined]
    latencies = [v for v in call.turn_latencies_ms or [] if isinstance(v, int | float)]
    mean, p95 = latency_mean_p95(latencies)
    return render(
        request,
        "calls/call_detail.html",
        {
            "call": call,
            "transcript": transcript,
            "events": events,
            "recordings": call.recordings.all(),
            "latency_mean_ms": mean,
            "latency_p95_ms": p95,
            "terminal_statuses": " ".join(sorted(TERMINAL)),
            "status_labels": status_labels(),
            # The supervisor console's Listen: the same ICE servers as web calls.
            "ice_servers": settings.WEBRTC_ICE_SERVERS,
            # Who holds the call now, and who listened or stepped in (F-75).
            "supervision": call_supervision_state(call=call),
            "supervision_history": call_supervision_history(call=call),
            **summary_context(call),
        },
    )


def offset_label(offset_ms: int) -> str:
    """`m:ss` of an offset in the call."""
    seconds = max(offset_ms, 0) // 1000
    return f"{seconds // 60}:{seconds % 60:02d}"


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _control_reply(
    request: HttpRequest, call: CallSession, *, ok: bool, message: str, status: int
) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"ok": ok, "message": message}, status=status)
    (messages.success if ok else messages.error)(request, message)
    return redirect("calls:detail", pk=call.pk)


def _run_control(
    request: HttpRequest, pk: int, *, action: Any, done: str, **data: Any
) -> HttpResponse:
    call = _get_call_or_404(request, pk)
    try:
        action(call=call, requested_by=request.user, **data)
    except CallNotLive:
        return _control_reply(
            request, call, ok=False, message=_("この通話は終了しています。"), status=409
        )
    except ApplicationError as exc:  # the channel layer could not be reached
        return _control_reply(
            request,
            call,
            ok=False,
            message=_("通話に届きませんでした。もう一度お試しください。"),
            status=exc.http_status,
        )
    return _control_reply(request, call, ok=True, message=done, status=202)


@login_required
@require_POST
def call_hangup(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask the call's bridge, wherever it runs, to hang up (F-23)."""
    return _run_control(
        request, pk, action=call_hangup_request, done=_("切断を指示しました。")
    )


@login_required
@require_POST
def call_instruct_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Inject an operator's instruction into the live conversation (F-23)."""
    text = request.POST.get("text", "").strip()
    if not text or len(text) > INSTRUCTION_MAX_CHARS:
        call = _get_call_or_404(request, pk)
        return _control_reply(
            request,
            call,
            ok=False,
            message=_("指示を1〜%(max)d文字で入力してください。")
            % {"max": INSTRUCTION_MAX_CHARS},
            status=400,
        )
    return _run_control(
        request, pk, action=call_instruct, text=text, done=_("AIに指示を送りました。")
    )


@login_required
@require_POST
def call_do_not_call(request: HttpRequest, pk: int) -> HttpResponse:
    """The operator's "do not call again" (F-65): list the customer's number now.

    Works on any call of the operator's organisation (a refusal heard just before
    the hang-up still counts); another organisation's call is a 404.
    """
    call = _get_call_or_404(request, pk)
    operator = request.user if isinstance(request.user, Operator) else None
    try:
        entry = dnc_add_from_call(
            call=call,
            source=DoNotCall.Source.OPERATOR,
            reason=_("オペレーターが通話中に登録"),
            created_by=operator,
        )
    except ApplicationError:  # no usable number on the call
        return _control_reply(
            request,
            call,
            ok=False,
            message=_("この通話の電話番号を登録できませんでした。"),
            status=400,
        )
    return _control_reply(
        request,
        call,
        ok=True,
        message=_("%(phone)s を今後の発信停止リストに登録しました。")
        % {"phone": mask_phone(entry.phone)},
        status=200,
    )


# --- Recordings (F-38) ------------------------------------------------------------


def _recording_or_404(request: HttpRequest, pk: int, rec_id: int) -> Recording:
    call = _get_call_or_404(request, pk)
    try:
        return call.recordings.get(pk=rec_id)
    except Recording.DoesNotExist:
        raise Http404("No such recording") from None


_SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(ValueError):
    """A Range header that asks for bytes past the end."""


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte of a single-range `Range` header, or None to
    send everything (no header, several ranges, or one we cannot read)."""
    match = _SINGLE_RANGE.match(header.strip())
    if match is None or not any(match.groups()):
        return None
    first, last = match.groups()
    if not first:  # the last N bytes
        if int(last) == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(size - int(last), 0), size - 1
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if start >= size:
        raise RangeNotSatisfiable(header)
    if end < start:
        return None
    return start, end


async def _in_thread(
    chunks: Iterator[bytes], close: Callable[[], None]
) -> AsyncIterator[bytes]:
    """Read a blocking iterator chunk by chunk in a worker thread, so Daphne streams
    it instead of reading it all first; `close` runs however the reading ends."""
    end = object()
    try:
        while (
            chunk := await sync_to_async(next, thread_sensitive=False)(chunks, end)
        ) is not end:
            yield chunk  # type: ignore[misc]
    finally:
        await sync_to_async(close, thread_sensitive=False)()


def _file_chunks(handle: Any, length: int) -> Iterator[bytes]:
    while length > 0:
        chunk = handle.read(min(FILE_CHUNK_BYTES, length))
        if not chunk:
            return
        length -= len(chunk)
        yield chunk


def _open_file(name: str) -> tuple[Any, int]:
    size = default_storage.size(name)
    return default_storage.open(name, "rb"), size


def _audio_response(
    chunks: AsyncIterator[bytes], *, status: int, headers: dict[str, str], name: str
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, status=status)
    for header, value in headers.items():
        response[header] = value
    response["Cache-Control"] = RECORDING_CACHE_CONTROL
    response["Content-Disposition"] = f'inline; filename="{name}"'
    return response


async def _unavailable(
    request: HttpRequest, recording: Recording, *, status: int, reason: str
) -> HttpResponse:
    # The page's header reads the user's organisation: render in a thread.
    return await sync_to_async(render)(
        request,
        "calls/recording_unavailable.html",
        {"call_id": recording.call_id, "recording": recording, "reason": reason},
        status=status,
    )


async def _file_audio(
    request: HttpRequest, recording: Recording, name: str
) -> HttpResponse:
    try:
        handle, size = await sync_to_async(_open_file)(recording.file.name)
    except OSError:
        return await _unavailable(
            request,
            recording,
            status=404,
            reason=_("録音ファイルが見つかりません。"),
        )
    try:
        span = byte_range(request.headers.get("Range", ""), size)
    except RangeNotSatisfiable:
        await sync_to_async(handle.close)()
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    first, last = span if span is not None else (0, size - 1)
    headers = {
        "Content-Type": mimetypes.guess_type(recording.file.name)[0]
        or "application/octet-stream",
        "Content-Length": str(max(last - first + 1, 0)),
        "Accept-Ranges": "bytes",
    }
    if span is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        await sync_to_async(handle.seek)(first)
    chunks = _in_thread(_file_chunks(handle, last - first + 1), handle.close)
    return _audio_response(
        chunks, status=206 if span else 200, headers=headers, name=name
    )


async def _twilio_audio(
    request: HttpRequest, recording: Recording, name: str
) -> HttpResponse:
    try:
        media = await sync_to_async(twilio_recording_fetch, thread_sensitive=False)(
            recording.url, byte_range=request.headers.get("Range", "")
        )
    except TwilioError as exc:
        return await _unavailable(request, recording, status=502, reason=str(exc))
    return _audio_response(
        _in_thread(media.chunks(), media.close),
        status=media.status,
        headers=media.headers,
        name=name,
    )


@login_required
@require_GET
async def recording_audio(request: HttpRequest, pk: int, rec_id: int) -> HttpResponse:
    """A recording's audio for the call page's player (F-38): the stored file, or
    Twilio's MP3 fetched with the account's credentials; byte ranges for seeking.
    Another organisation's call or recording is a 404; Twilio failing is a 502 page."""
    recording = await sync_to_async(_recording_or_404)(request, pk, rec_id)
    if recording.file:
        extension = PurePosixPath(recording.file.name).suffix or ".bin"
        return await _file_audio(
            request, recording, f"call-{pk}-recording-{rec_id}{extension}"
        )
    if recording.url:
        return await _twilio_audio(
            request, recording, f"call-{pk}-recording-{rec_id}.mp3"
        )
    return await _unavailable(
        request, recording, status=404, reason=_("この録音には音声がありません。")
    )
