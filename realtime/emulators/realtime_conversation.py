"""The fake Realtime server's conversation: ordered items, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from realtime.emulators import realtime_shapes as shapes
from realtime.emulators.strict_json import ClientEventError

__all__ = ["Conversation", "Item"]


@dataclass(slots=True, eq=False)
class Item:
    """A conversation item and the audio the server holds for it."""

    data: dict[str, Any]
    """The item as conversation.item.* events carry it (never audio bytes)."""
    audio_ms: float = 0.0
    audio: bytes = b""
    """μ-law of a user audio item, for conversation.item.retrieve."""

    @property
    def id(self) -> str:
        """The item id."""
        return str(self.data["id"])


class Conversation:
    """The default conversation's items, in order."""

    def __init__(self) -> None:
        self._items: dict[str, Item] = {}
        self._order: list[str] = []

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def __len__(self) -> int:
        return len(self._order)

    @property
    def last_id(self) -> str | None:
        """The id of the last item, if any."""
        return self._order[-1] if self._order else None

    def append(self, item: Item) -> str | None:
        """Add ``item`` at the end; return the id of the item before it."""
        previous = self.last_id
        self.insert(item, len(self._order))
        return previous

    def insert(self, item: Item, position: int) -> None:
        """Put ``item`` at ``position``."""
        self._items[item.id] = item
        self._order.insert(position, item.id)

    def position_after(self, previous_item_id: str | None) -> int:
        """Where conversation.item.create puts an item (``"root"``: first)."""
        if previous_item_id is None:
            return len(self._order)
        if previous_item_id == "root":
            return 0
        if previous_item_id in self._items:
            return self._order.index(previous_item_id) + 1
        raise ClientEventError(
            "invalid_value",
            f"Previous item with item_id not found: {previous_item_id}",
            "previous_item_id",
        )

    def id_before(self, position: int) -> str | None:
        """The id of the item before ``position``."""
        return self._order[position - 1] if position else None

    def previous_of(self, item_id: str) -> str | None:
        """The id of the item before ``item_id``."""
        if item_id not in self._items:
            return None
        return self.id_before(self._order.index(item_id))

    def get(self, item_id: str) -> Item:
        """Return an item, or raise the error an unknown id earns."""
        item = self._items.get(item_id)
        if item is None:
            raise ClientEventError(
                "invalid_value", f"Item with item_id not found: {item_id}", "item_id"
            )
        return item

    def delete(self, item_id: str) -> None:
        """Remove an item."""
        del self._items[item_id]
        self._order.remove(item_id)

    def has_call(self, call_id: str) -> bool:
        """Whether a function_call item with ``call_id`` is in the conversation."""
        return any(
            item.data.get("type") == "function_call"
            and item.data.get("call_id") == call_id
            for item in self._items.values()
        )

    def input_tokens(self, instructions: str) -> tuple[int, int]:
        """Estimate (text, audio) input tokens of a response over this conversation.

        The whole conversation is input to every response (PROTOCOL A8).
        """
        text = shapes.text_tokens(instructions) + 4 * len(self._items)
        audio_ms = 0.0
        for item in self._items.values():
            audio_ms += item.audio_ms
            for part in item.data.get("content") or []:
                if part.get("type") in ("input_text", "output_text"):
                    text += shapes.text_tokens(part.get("text") or "")
            for key in ("arguments", "output"):
                text += shapes.text_tokens(str(item.data.get(key) or ""))
        return text, shapes.audio_tokens_in(audio_ms)
