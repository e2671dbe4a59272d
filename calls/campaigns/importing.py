"""Contacts from a CSV file, validated row by row (F-46, F-63, F-67 import contract).

`contacts_import(campaign=…, fileobj=…)` streams the upload: it never holds the
whole file. The bytes pass through a buffered reader and an incremental decoder
(`io.TextIOWrapper`) into `csv.reader`; accepted rows are inserted with
`bulk_create` in batches of `BATCH_SIZE`. Memory holds one batch and the rejected
rows of the report, whatever the file's length: a number repeated within a batch is
caught by the batch's own map, one repeated from an earlier batch by the same
indexed look-up that finds the campaign's existing contacts (rows inserted by this
import have a higher primary key than any contact before it; the campaign row is
locked for the import).

Encoding: UTF-8 (with or without a byte order mark) or Shift_JIS as Excel in Japan
writes it (cp932), told apart on the first 64 KiB (`calls/campaigns/csv_decoding.py`
has the rule); a file that is neither is a 400, and bytes further on that do not
decode also give 400 with nothing imported (the import is one transaction).

Columns: the phone column is `phone`, `phone_number` or `number` (header cells are
trimmed and compared case-insensitively); `name` fills `{{customer_name}}`; every
other column is a prompt variable under its trimmed header (`{{column}}`).

Rows (line 1 is the header; `line` is where a row starts): blank lines are skipped;
a row with more or fewer fields than the header, or a phone that is not a valid
number, is `invalid`; a number seen before in the file or already a contact of the
campaign is `duplicate`; a number on the organisation's do-not-call list is `dnc`
(never inserted); a row lacking a value that the agent's instructions or greeting,
or the campaign's opening, needs and the agent profile does not give is
`missing_variable`. Only a `draft` or `paused` campaign takes an import (409
otherwise): a running dialer is never handed rows mid-tick, and a finished
campaign stays as it was reported.
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils.translation import gettext as _

from agents.phones import normalize_phone
from agents.prompts import template_variables
from callcenter.errors import ApplicationError, ErrorCode
from calls.campaigns.csv_decoding import UndecodableFile, open_text
from calls.campaigns.disclosure import DISCLOSURE_FIELDS
from calls.campaigns.models import Campaign, Contact, DoNotCall, contact_prompt_values

PHONE_COLUMNS = ("phone", "phone_number", "number")
NAME_COLUMN = "name"
BATCH_SIZE = 1000
NAME_MAX_CHARS = 200
IMPORTABLE_STATUSES = (Campaign.Status.DRAFT, Campaign.Status.PAUSED)

INVALID = "invalid"
DUPLICATE = "duplicate"
DNC = "dnc"
MISSING_VARIABLE = "missing_variable"


@dataclass(slots=True)
class ImportReport:
    """What an import did: how many contacts were added, which rows were not."""

    accepted: int = 0
    # {"line", "phone", "reason", "detail"}, in file order.
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, *, line: int, phone: str, reason: str, detail: str) -> None:
        self.rejected.append(
            {"line": line, "phone": phone, "reason": reason, "detail": detail}
        )

    def as_dict(self) -> dict[str, Any]:
        """The API's body: `{"accepted": n, "rejected": [...]}`."""
        return {"accepted": self.accepted, "rejected": list(self.rejected)}


def _bad_file(message: str, **details: Any) -> ApplicationError:
    return ApplicationError(
        message, code=ErrorCode.VALIDATION, http_status=400, details=details
    )


# --- Columns and variables ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Columns:
    width: int
    phone: int
    name: int | None
    # (index, variable name) of every other column with a header.
    variables: tuple[tuple[int, str], ...]


def columns_read(header: list[str]) -> Columns:
    """Find the phone, name and variable columns; 400 without a phone column."""
    cells = [cell.strip() for cell in header]
    lowered = [cell.lower() for cell in cells]
    phone = next((lowered.index(c) for c in PHONE_COLUMNS if c in lowered), None)
    if phone is None:
        raise _bad_file(
            "The file has no phone column (phone, phone_number or number).",
            file=[
                "No phone column: name one of phone, phone_number, number. "
                "Columns found: " + (", ".join(c for c in cells if c) or "none") + "."
            ],
        )
    repeated = sorted({c for c in cells if c and cells.count(c) > 1})
    if repeated:
        raise _bad_file(
            "The header repeats a column: " + ", ".join(repeated) + ".",
            file=["Repeated column(s): " + ", ".join(repeated) + "."],
        )
    name = lowered.index(NAME_COLUMN) if NAME_COLUMN in lowered else None
    variables = tuple(
        (i, cell) for i, cell in enumerate(cells) if cell and i not in (phone, name)
    )
    return Columns(width=len(cells), phone=phone, name=name, variables=variables)


def required_variables(campaign: Campaign) -> list[str]:
    """Variables each contact must fill: those the agent's instructions and greeting
    and the campaign's opening use, less what the agent profile itself gives."""
    agent = campaign.agent
    given = {k for k, v in agent.profile_variables().items() if v not in (None, "")}
    needed: dict[str, None] = {}
    for template in (agent.instructions_template, agent.greeting_template):
        needed.update(dict.fromkeys(template_variables(template)))
    opening = [
        v for v in template_variables(campaign.opening) if v not in DISCLOSURE_FIELDS
    ]
    needed.update(dict.fromkeys(opening))
    return [name for name in needed if name not in given]


def phone_clean(raw: str) -> str:
    """Fold full-width digits and signs (`０９０－１２３４`) before parsing."""
    return unicodedata.normalize("NFKC", raw).strip()


# --- The import -------------------------------------------------------------------


@dataclass(slots=True)
class _Row:
    line: int
    raw_phone: str
    contact: Contact


def _rows(
    reader: Iterator[list[str]], state: dict[str, int]
) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of every record; the csv reader counts physical lines."""
    line_reader: Any = reader
    previous_end = line_reader.line_num
    for fields in reader:
        start = previous_end + 1
        previous_end = line_reader.line_num
        state["line"] = start
        yield start, fields


def contacts_import(*, campaign: Campaign, fileobj: BinaryIO) -> ImportReport:
    """Add a CSV file's rows as contacts of a draft or paused campaign.

    Returns the report of accepted and rejected rows. Raises ApplicationError 400
    (`validation_error`) for a file that cannot be read as CSV with a phone column,
    409 (`conflict`) for a campaign in another status. All or nothing: a file that
    fails part way adds no contact.
    """
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update()
            .select_related("agent", "agent__organization")
            .get(pk=campaign.pk)
        )
        if campaign.status not in IMPORTABLE_STATUSES:
            raise ApplicationError(
                f"Contacts can be imported into a draft or paused campaign, "
                f"not a {campaign.status} one.",
                code=ErrorCode.CONFLICT,
                http_status=409,
                details={"status": campaign.status},
            )
        try:
            text, encoding = open_text(fileobj)
        except UndecodableFile as exc:
            raise _bad_file(str(exc), file=[exc.detail]) from exc
        state = {"line": 1}
        try:
            return _import(campaign, csv.reader(text), state)
        except UnicodeDecodeError as exc:
            raise _bad_file(
                f"The file stops being {encoding} text near line {state['line']}.",
                file=[f"Cannot decode line {state['line']} as {encoding}."],
            ) from exc
        except csv.Error as exc:
            raise _bad_file(
                f"The file is not readable CSV near line {state['line']}: {exc}.",
                file=[f"Line {state['line']}: {exc}."],
            ) from exc
        finally:
            text.detach()


def _import(
    campaign: Campaign, reader: Iterator[list[str]], state: dict[str, int]
) -> ImportReport:
    report = ImportReport()
    try:
        header = next(reader)
    except StopIteration:
        raise _bad_file(
            "The file is empty.", file=["The file is empty: a header is needed."]
        ) from None
    columns = columns_read(header)
    required = required_variables(campaign)
    # Contacts of the campaign before this import have pk <= floor.
    floor = campaign.contacts.aggregate(floor=Max("pk"))["floor"] or 0
    in_batch: dict[str, int] = {}  # E.164 → line, this batch only
    batch: list[_Row] = []

    for line, fields in _rows(reader, state):
        if not any(cell.strip() for cell in fields):
            continue  # a blank line, or one of only commas
        raw_phone = fields[columns.phone].strip() if columns.phone < len(fields) else ""
        if len(fields) != columns.width:
            report.reject(
                line=line,
                phone=raw_phone,
                reason=INVALID,
                detail=_("%(count)d fields; the header has %(width)d.")
                % {"count": len(fields), "width": columns.width},
            )
            continue
        if not raw_phone:
            report.reject(
                line=line, phone="", reason=INVALID, detail=_("No phone number.")
            )
            continue
        try:
            e164 = normalize_phone(phone_clean(raw_phone))
        except ValidationError as exc:
            report.reject(
                line=line,
                phone=raw_phone,
                reason=INVALID,
                detail=" ".join(exc.messages),
            )
            continue
        if e164 in in_batch:
            report.reject(
                line=line,
                phone=raw_phone,
                reason=DUPLICATE,
                detail=_earlier(e164, in_batch[e164]),
            )
            continue
        name = fields[columns.name].strip() if columns.name is not None else ""
        if len(name) > NAME_MAX_CHARS:
            report.reject(
                line=line,
                phone=raw_phone,
                reason=INVALID,
                detail=_("The name is longer than %(max)d characters.")
                % {"max": NAME_MAX_CHARS},
            )
            continue
        variables = {
            key: fields[i].strip() for i, key in columns.variables if fields[i].strip()
        }
        values = contact_prompt_values(name=name, variables=variables)
        missing = [v for v in required if values.get(v) in (None, "")]
        if missing:
            report.reject(
                line=line,
                phone=raw_phone,
                reason=MISSING_VARIABLE,
                detail=_("No value for %(names)s.")
                % {"names": ", ".join("{{" + v + "}}" for v in missing)},
            )
            continue
        in_batch[e164] = line
        batch.append(
            _Row(
                line=line,
                raw_phone=raw_phone,
                contact=Contact(
                    campaign=campaign,
                    phone=e164,
                    name=name,
                    variables=variables,
                    source_line=line,
                ),
            )
        )
        if len(batch) >= BATCH_SIZE:
            _flush(campaign, batch, report, floor=floor)
            batch = []
            in_batch.clear()
    _flush(campaign, batch, report, floor=floor)
    report.rejected.sort(key=lambda r: r["line"])
    return report


def _earlier(phone: str, line: int | None) -> str:
    return _("%(phone)s appears earlier in the file (line %(line)s).") % {
        "phone": phone,
        "line": line,
    }


def _flush(
    campaign: Campaign, batch: list[_Row], report: ImportReport, *, floor: int
) -> None:
    """Drop the batch's do-not-call and existing numbers, insert the rest."""
    if not batch:
        return
    phones = [row.contact.phone for row in batch]
    blocked = set(
        DoNotCall.objects.filter(
            organization_id=campaign.organization_id, phone__in=phones
        ).values_list("phone", flat=True)
    )
    existing = {
        phone: (pk, line)
        for phone, pk, line in Contact.objects.filter(
            campaign=campaign, phone__in=phones
        ).values_list("phone", "pk", "source_line")
    }
    fresh: list[Contact] = []
    for row in batch:
        phone = row.contact.phone
        if phone in blocked:
            report.reject(
                line=row.line,
                phone=row.raw_phone,
                reason=DNC,
                detail=_("%(phone)s is on the do-not-call list.") % {"phone": phone},
            )
        elif phone in existing:
            pk, line = existing[phone]
            report.reject(
                line=row.line,
                phone=row.raw_phone,
                reason=DUPLICATE,
                detail=_earlier(phone, line)
                if pk > floor
                else _("%(phone)s is already a contact of this campaign.")
                % {"phone": phone},
            )
        else:
            fresh.append(row.contact)
    Contact.objects.bulk_create(fresh, batch_size=BATCH_SIZE)
    report.accepted += len(fresh)
