"""The refusal classifier (F-65): refusals stop calls, postponements do not."""

from __future__ import annotations

import pytest

from calls.campaigns.refusal import Kind, is_refusal, refusal_kind

REFUSALS = [
    "もう電話しないでください",
    "もう電話してこないで",
    "二度とかけないで",
    "二度とかけてこないでください",
    "結構です",
    "いえ、結構です。",
    "必要ありません",
    "興味ありません",
    "興味ないです",
    "迷惑です",
    "迷惑なんですけど",
    "リストから外してください",
    "電話番号を削除してください",
    "営業の電話はお断りです",
    "いりません",
    "もう　電話しないで",  # a full-width space
    "今忙しいし、もう電話しないで",  # a firm refusal wins over a postponement
    "後でとかじゃなくて、二度とかけないで",
]

NOT_REFUSALS = [
    "今は忙しい",
    "今ちょっと忙しいので",
    "家族に相談します",
    "家族に相談してから決めます",
    "また今度",
    "また今度お願いします",
    "後で",
    "後でかけ直してください",
    "あとでお願いします",
    "検討します",
    "夕方ならいいですよ",
    "今は結構です、また今度",  # a soft refusal put off is a postponement
    "それで結構です",  # agreement
    "興味があります",
    "迷惑ではありません",
    "はい、お願いします",
    "",
]


@pytest.mark.parametrize("text", REFUSALS)
def test_refusals(text: str) -> None:
    """Explicit refusals of further calls are refusals."""
    assert is_refusal(text), text


@pytest.mark.parametrize("text", NOT_REFUSALS)
def test_not_refusals(text: str) -> None:
    """Putting the call off, agreeing or anything else is not a refusal."""
    assert not is_refusal(text), text


def test_kinds() -> None:
    assert refusal_kind("今は忙しい") is Kind.POSTPONEMENT
    assert refusal_kind("家族に相談") is Kind.POSTPONEMENT
    assert refusal_kind("もしもし") is Kind.OTHER
    assert refusal_kind("迷惑です") is Kind.REFUSAL


def test_refusal_module_is_pure() -> None:
    """No Django in the classifier: it runs anywhere, tested without a database."""
    import ast
    import pathlib

    import calls.campaigns.refusal as module

    tree = ast.parse(pathlib.Path(module.__file__).read_text())
    names = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ] + [
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ]
    assert not [n for n in names if n.startswith("django")]
