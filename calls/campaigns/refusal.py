"""Is what the customer said a refusal of further calls? (特定商取引法 第17条, F-65)

Pure: no Django, no I/O. The agent's `record_opt_out` tool passes the customer's own
words here before anything is written, so a model that hears 「今は忙しい」 as a
refusal cannot put a willing customer on the do-not-call list.

Three kinds of phrases, checked on the NFKC-folded text without spaces:
  - firm refusals (「もう電話しないで」「二度とかけないで」「迷惑です」「リストから外して」)
    are a refusal whatever else is said;
  - soft refusals (「結構です」「必要ありません」「興味ありません」「いりません」) are a
    refusal unless the customer also puts the call off;
  - postponements (「今は忙しい」「家族に相談」「また今度」「後で」「検討します」) alone
    are never a refusal: the agent offers to call another time.
"""

from __future__ import annotations

import enum
import re
import unicodedata


class Kind(enum.StrEnum):
    REFUSAL = "refusal"
    POSTPONEMENT = "postponement"
    OTHER = "other"


FIRM_REFUSALS = (
    r"(もう|二度と|今後|金輪際)(は)?(電話|でんわ|連絡)(を|は|も)?(しないで|かけないで|してこないで|やめて|結構|不要|いらない|いりません|お断り)",
    r"(もう|二度と|今後)(は)?(かけて|掛けて)(こないで|くるな|来ないで)",
    r"二度と(かけ|掛け|電話し)",
    r"(電話|でんわ)(を|は)?(かけ|掛け)?(ないで|ないでください|しないで|してこないで|してくるな)",
    r"(かけて|掛けて)(こないで|くるな|来ないで)",
    r"迷惑(です|だ|なんです|なので|してます|しています)",
    r"(リスト|名簿)から(外し|はずし|消し|削除)",
    r"(番号|電話番号|連絡先)を?(消し|削除)",
    r"(電話|連絡|勧誘)(は|を)?(お断り|断り)",
    r"(勧誘|営業)(は|の電話は)?(結構|お断り|いりません|いらない|不要)",
    r"やめてください",
)
SOFT_REFUSALS = (
    r"(?<!で)(?<!が)結構(です|だ|です。)",
    r"必要(ありません|ない|ないです|は?ありません|ございません)",
    r"興味(が|は)?(ありません|ない|ないです|ございません)",
    r"(いりません|要りません|いらない|要らない|いらないです)",
    r"お断り(します|です|いたします)",
    r"(けっこうです|ケッコウです)",
)
POSTPONEMENTS = (
    r"(今|いま)(は|ちょっと)?(ちょっと)?(忙し|いそがし|手が離せ|無理|だめ|ダメ|出先|運転|会議|取り込)",
    r"忙しい",
    r"手が離せ",
    r"(家族|妻|夫|主人|家内|親|息子|娘|上司|社長|担当)(と|に)(相談|聞い|確認|話し)",
    r"相談(して|します|させて)",
    r"また(今度|こんど|後で|あとで|改めて|の機会|次回|電話して|かけて|連絡)",
    r"(後で|あとで|後ほど|のちほど|改めて|あらためて)",
    r"(検討|考え)(します|させて|てみます|ておきます|たい)",
    r"(明日|あした|来週|来月|夕方|夜|午後|午前|週末)(に|なら|だったら|でしたら|にまた|にして)",
    r"折り返",
    r"別の(日|時間|機会)",
    r"(今日|今)は(結構|いい|大丈夫)",
)

_FIRM = [re.compile(p) for p in FIRM_REFUSALS]
_SOFT = [re.compile(p) for p in SOFT_REFUSALS]
_LATER = [re.compile(p) for p in POSTPONEMENTS]
_SPACES = re.compile(r"[\s、,，。.!！?？…・「」『』]+")


def _fold(text: str) -> str:
    return _SPACES.sub("", unicodedata.normalize("NFKC", text or ""))


def refusal_kind(text: str) -> Kind:
    """Classify the customer's words: a refusal, a postponement, or neither."""
    folded = _fold(text)
    if any(p.search(folded) for p in _FIRM):
        return Kind.REFUSAL
    later = any(p.search(folded) for p in _LATER)
    if later:
        return Kind.POSTPONEMENT
    if any(p.search(folded) for p in _SOFT):
        return Kind.REFUSAL
    return Kind.OTHER


def is_refusal(text: str) -> bool:
    """True only when the words refuse further calls (see the module docstring)."""
    return refusal_kind(text) is Kind.REFUSAL
