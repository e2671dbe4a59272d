"""Contacts import (F-67): encodings, columns, row checks, streaming."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.utils import translation

from callcenter.errors import ApplicationError
from calls.campaigns.csv_decoding import (
    DETECT_BYTES,
    UndecodableFile,
    detect_encoding,
)
from calls.campaigns.importing import BATCH_SIZE, contacts_import
from calls.campaigns.models import Campaign, Contact
from tests.calls.campaigns.factories import (
    CampaignFactory,
    ContactFactory,
    DoNotCallFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english() -> Any:
    """Details are translated; these tests read the English ones."""
    with translation.override("en"):
        yield


def run(campaign: Campaign, text: str, encoding: str = "utf-8") -> dict[str, Any]:
    return contacts_import(
        campaign=campaign, fileobj=io.BytesIO(text.encode(encoding))
    ).as_dict()


def phones(campaign: Campaign) -> list[str]:
    return list(campaign.contacts.order_by("pk").values_list("phone", flat=True))


class ChunkLimitedFile(io.RawIOBase):
    """A file that refuses any read of more than `limit` bytes (or of everything)."""

    def __init__(self, data: bytes, limit: int) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self.limit = limit
        self.largest = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        if size is None or size < 0 or size > self.limit:
            raise AssertionError(f"read({size}) asks for the whole file")
        self.largest = max(self.largest, size)
        chunk = bytes(self._data[self._pos : self._pos + size])
        self._pos += len(chunk)
        return chunk


def test_utf8_rows_become_contacts_with_variables() -> None:
    """Phone in E.164, name, every other column a variable; the report is exact."""
    campaign = CampaignFactory()
    report = run(campaign, "phone,name,plan\n090-1234-5678,山田,ゴールド\n")
    assert report == {"accepted": 1, "rejected": []}
    contact = campaign.contacts.get()
    assert (contact.phone, contact.name) == ("+819012345678", "山田")
    assert contact.variables == {"plan": "ゴールド"}
    assert contact.source_line == 2
    assert contact.status == Contact.Status.PENDING


def test_shift_jis_file_is_read_as_cp932() -> None:
    """Excel's Japanese CSV (cp932, with ㈱ and 髙) is decoded without a hint."""
    campaign = CampaignFactory()
    text = "phone,name,会社\r\n09012345678,髙橋,㈱テスト\r\n"
    report = run(campaign, text, "cp932")
    assert report["accepted"] == 1
    contact = campaign.contacts.get()
    assert contact.name == "髙橋"
    assert contact.variables == {"会社": "㈱テスト"}


def test_utf8_with_bom() -> None:
    """A UTF-8 byte order mark does not end up in the first header."""
    campaign = CampaignFactory()
    report = run(campaign, "\ufeffPhone,Name\n09012345678,山田\n", "utf-8")
    assert report["accepted"] == 1
    assert campaign.contacts.get().name == "山田"


def test_detect_encoding_rule() -> None:
    """BOM, then UTF-8 on the head, then cp932; a character cut at the end is fine."""
    assert detect_encoding(b"\xef\xbb\xbfphone", complete=True) == "utf-8-sig"
    assert detect_encoding("phone,名前".encode(), complete=True) == "utf-8"
    cut = "phone,名前".encode()[:-1]
    assert detect_encoding(cut, complete=False) == "utf-8"
    assert detect_encoding("phone,名前".encode("cp932"), complete=True) == "cp932"
    with pytest.raises(UndecodableFile, match="UTF-16"):
        detect_encoding(b"\xff\xfep\x00", complete=True)


def test_undecodable_file_is_400_and_imports_nothing() -> None:
    """Bytes that are neither UTF-8 nor cp932 are refused with a 400."""
    campaign = CampaignFactory()
    with pytest.raises(ApplicationError) as exc:
        contacts_import(
            campaign=campaign, fileobj=io.BytesIO(b"phone\n\x81\x7f\xa0\xff\x80\n")
        )
    assert exc.value.http_status == 400
    assert "UTF-8" in exc.value.message


def test_bad_bytes_after_the_detected_head_roll_back() -> None:
    """A file that stops decoding part way adds no contact and names the line."""
    campaign = CampaignFactory()
    good = "phone\n" + "".join(f"0901{n:07d}\n" for n in range(DETECT_BYTES // 12 + 10))
    data = good.encode() + b"\xff\xfe\n"
    with pytest.raises(ApplicationError) as exc:
        contacts_import(campaign=campaign, fileobj=io.BytesIO(data))
    assert exc.value.http_status == 400
    assert "line" in exc.value.message
    assert not campaign.contacts.exists()


def test_quoted_commas_and_newlines_stay_in_the_field() -> None:
    """A quoted field keeps its commas and line breaks; lines count physical lines."""
    campaign = CampaignFactory()
    text = (
        'phone,name,address\n"090-1234-5678","山田, 太郎","東京都,\n港区"\n'
        "0901234567x,鈴木,大阪\n"
    )
    report = run(campaign, text)
    contact = campaign.contacts.get()
    assert contact.name == "山田, 太郎"
    assert contact.variables["address"] == "東京都,\n港区"
    assert report["rejected"][0]["line"] == 4


def test_japanese_phone_formats() -> None:
    """Hyphens, spaces, parentheses, full-width digits and +81 all give E.164."""
    campaign = CampaignFactory()
    text = (
        "number\n"
        "090-1111-2222\n"
        "090 1111 3333\n"
        "(03) 1234-5678\n"
        "０９０－１１１１－４４４４\n"
        "+81 90 1111 5555\n"
        "+81-90-1111-6666\n"
    )
    report = run(campaign, text)
    assert report == {"accepted": 6, "rejected": []}
    assert phones(campaign) == [
        "+819011112222",
        "+819011113333",
        "+81312345678",
        "+819011114444",
        "+819011115555",
        "+819011116666",
    ]


@pytest.mark.parametrize(
    "header", ["phone", "Phone", " PHONE ", "phone_number", "Phone_Number", "number"]
)
def test_phone_column_header_variants(header: str) -> None:
    """phone / phone_number / number, trimmed and in any case."""
    campaign = CampaignFactory()
    report = run(campaign, f"{header},name\n09012345678,山田\n")
    assert report["accepted"] == 1


def test_no_phone_column_is_400_naming_the_columns() -> None:
    """Without a phone column the file is refused, listing what it has."""
    campaign = CampaignFactory()
    with pytest.raises(ApplicationError) as exc:
        run(campaign, "tel,name\n09012345678,山田\n")
    assert exc.value.http_status == 400
    assert "phone" in exc.value.message
    assert "tel, name" in exc.value.details["file"][0]


def test_empty_file_is_400() -> None:
    with pytest.raises(ApplicationError) as exc:
        run(CampaignFactory(), "")
    assert exc.value.http_status == 400


def test_invalid_numbers_and_field_counts_are_reported() -> None:
    """Bad numbers and rows of the wrong width are `invalid` with a clear detail."""
    campaign = CampaignFactory()
    text = (
        "phone,name\n"
        "12345,短い\n"
        ",名無し\n"
        "09012345678,山田,余分\n"
        "09012345679\n"
        "\n"
        ",\n"
        "09012345670,佐藤\n"
    )
    report = run(campaign, text)
    assert report["accepted"] == 1
    rejected = report["rejected"]
    assert [(r["line"], r["reason"]) for r in rejected] == [
        (2, "invalid"),
        (3, "invalid"),
        (4, "invalid"),
        (5, "invalid"),
    ]
    assert rejected[0]["phone"] == "12345"
    assert "not" in rejected[0]["detail"]
    assert rejected[1]["detail"] == "No phone number."
    assert rejected[2]["detail"] == "3 fields; the header has 2."
    assert rejected[3]["detail"] == "1 fields; the header has 2."


def test_duplicates_in_the_file_and_in_the_campaign() -> None:
    """A number seen earlier in the file or already a contact is `duplicate`."""
    campaign = CampaignFactory()
    ContactFactory(campaign=campaign, phone="+819012340001")
    ContactFactory(phone="+819012340002")  # another campaign: no conflict
    text = (
        "phone,name\n"
        "090-1234-0001,既存\n"
        "090-1234-0002,別キャンペーン\n"
        "090-1234-0003,一回目\n"
        "09012340003,二回目\n"
    )
    report = run(campaign, text)
    assert report["accepted"] == 2
    assert [(r["line"], r["reason"]) for r in report["rejected"]] == [
        (2, "duplicate"),
        (5, "duplicate"),
    ]
    assert "already" in report["rejected"][0]["detail"]
    assert report["rejected"][1]["detail"] == (
        "+819012340003 appears earlier in the file (line 4)."
    )
    assert campaign.contacts.get(phone="+819012340003").name == "一回目"


def test_do_not_call_numbers_are_rejected_not_inserted() -> None:
    """A number on the organisation's list is `dnc`; another org's list is ignored."""
    campaign = CampaignFactory()
    DoNotCallFactory(organization=campaign.organization, phone="+819011112222")
    DoNotCallFactory(phone="+819011113333")
    report = run(campaign, "phone\n090-1111-2222\n090-1111-3333\n")
    assert report["accepted"] == 1
    assert report["rejected"] == [
        {
            "line": 2,
            "phone": "090-1111-2222",
            "reason": "dnc",
            "detail": "+819011112222 is on the do-not-call list.",
        }
    ]
    assert phones(campaign) == ["+819011113333"]


def test_missing_variable_names_it() -> None:
    """A value the templates need, empty in the row or with no column, is reported."""
    campaign = CampaignFactory(
        opening="{{business_name}}の{{caller_name}}です。{{product}}のご案内で"
        "{{customer_name}}様にお電話しました。"
    )
    campaign.agent.greeting_template = "{{plan}}についてです。"
    campaign.agent.save()
    text = "phone,name,plan\n09011110001,山田,\n09011110002,,ゴールド\n09011110003,佐藤,金\n"
    report = run(campaign, text)
    assert report["accepted"] == 1
    assert [(r["line"], r["reason"], r["detail"]) for r in report["rejected"]] == [
        (2, "missing_variable", "No value for {{plan}}."),
        (3, "missing_variable", "No value for {{customer_name}}."),
    ]
    campaign.contacts.all().delete()
    report = run(campaign, "phone,name\n09011110001,山田\n")
    assert report["rejected"][0]["detail"] == "No value for {{plan}}."


def test_profile_values_satisfy_the_templates() -> None:
    """A variable the agent profile fills is not asked of the row."""
    campaign = CampaignFactory()
    campaign.agent.greeting_template = "{{service_name}}の{{representative_name}}です"
    campaign.agent.representative_name = "佐藤"
    campaign.agent.save()
    assert run(campaign, "phone\n09012345678\n")["accepted"] == 1


@pytest.mark.parametrize(
    "status", [Campaign.Status.RUNNING, Campaign.Status.COMPLETED, "canceled"]
)
def test_only_draft_or_paused_campaigns_take_imports(status: str) -> None:
    campaign = CampaignFactory(status=status)
    with pytest.raises(ApplicationError) as exc:
        run(campaign, "phone\n09012345678\n")
    assert exc.value.http_status == 409


def test_paused_campaign_takes_imports() -> None:
    campaign = CampaignFactory(status=Campaign.Status.PAUSED)
    assert run(campaign, "phone\n09012345678\n")["accepted"] == 1


def test_big_file_is_streamed_in_chunks_and_batches(
    django_assert_max_num_queries: Any,
) -> None:
    """5 000 rows pass through reads of at most 64 KiB and batched inserts."""
    campaign = CampaignFactory()
    rows = 5 * BATCH_SIZE
    text = "phone,name,plan\n" + "".join(
        f"0901{n:07d},顧客{n},プラン{n % 7} ゴールド会員\n" for n in range(rows)
    )
    data = text.encode("cp932")
    assert len(data) > 3 * DETECT_BYTES
    source = ChunkLimitedFile(data, limit=DETECT_BYTES)
    # Per batch: two look-ups and the INSERTs (SQLite splits those by its variable
    # limit); never a query per row.
    with django_assert_max_num_queries(rows // 50):
        report = contacts_import(campaign=campaign, fileobj=source)  # type: ignore[arg-type]
    assert report.accepted == rows
    assert report.rejected == []
    assert 0 < source.largest <= DETECT_BYTES
    assert campaign.contacts.count() == rows
    assert campaign.contacts.get(phone="+819010004999").variables == {
        "plan": "プラン1 ゴールド会員"
    }


def test_repeat_across_batches_is_found_in_the_database() -> None:
    """A number repeated a batch later is a duplicate naming the earlier line."""
    campaign = CampaignFactory()
    ContactFactory(campaign=campaign, phone="+819099990000")
    again = (
        "phone,name,plan\n09011112222,a,x\n"
        + "".join(f"0902{n:07d},b,x\n" for n in range(BATCH_SIZE + 1))
        + "090-1111-2222,c,x\n"
    )
    second = contacts_import(campaign=campaign, fileobj=io.BytesIO(again.encode()))
    assert second.accepted == BATCH_SIZE + 2
    assert second.as_dict()["rejected"] == [
        {
            "line": BATCH_SIZE + 4,
            "phone": "090-1111-2222",
            "reason": "duplicate",
            "detail": "+819011112222 appears earlier in the file (line 2).",
        }
    ]


def test_details_are_translated_for_the_operator() -> None:
    """In Japanese (the default language) the report's details are Japanese."""
    campaign = CampaignFactory()
    with translation.override("ja"):
        report = run(campaign, "phone\n09012345678\n090-1234-5678\n,\n1,2\n")
    assert [r["detail"] for r in report["rejected"]] == [
        "+819012345678 はファイルの前の行(2行目)にもあります。",
        "項目が2個です(見出しは1個)。",
    ]
