"""hypothesis strategies that build valid records straight from the tables in protocol/schema.py."""

from hypothesis import strategies as st

from protocol import codec, schema

# Chinese names with characters outside GB2312 (喆 堃 镕), a 4-byte UTF-8 character (𠀋, CJK Ext. B),
# full-width punctuation, ASCII and a little Latin.
RARE = "王喆李堃朱镕𠀋𡈽𪚥"
TEXT_ALPHABET = st.one_of(
    st.sampled_from(RARE + "不动产登记（）：，。等待时间长服务态度差办事效率低"),
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
    st.characters(min_codepoint=0x20000, max_codepoint=0x2A6DF),
)
TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
CHINESE_NAMES = ("王喆", "李堃", "朱镕", "张伟", "欧阳𠀋")


def _scalar(kind, limit, sub, in_list):
    low = 0 if in_list else 1           # single zero/empty values are "absent" on the wire
    if kind == schema.U:
        return st.integers(low, limit)
    if kind == schema.S:
        return st.text(TEXT_ALPHABET, min_size=low, max_size=min(limit, 24))
    if kind == schema.T:
        return st.text(TOKEN_ALPHABET, min_size=low, max_size=min(limit, 24))
    if kind == schema.B:
        return st.binary(min_size=low, max_size=limit)
    return record_of(sub)


def record_of(fields, required=()):
    """Dicts holding any subset of the fields, each valid; required fields always present."""
    parts = {}
    optional = {}
    for num, name, kind, limit, repeat, sub in fields:
        if repeat:
            value = st.lists(_scalar(kind, limit, sub, True), min_size=1, max_size=min(repeat, 4))
        else:
            value = _scalar(kind, limit, sub, False)
        (parts if name in required else optional)[name] = value
    return st.fixed_dictionaries(parts, optional=optional)


def message(msg_type):
    """A valid record of that type whose encoding fits one frame."""
    fields = schema.MESSAGES[msg_type]
    return record_of(fields, schema.REQUIRED.get(msg_type, ())).filter(
        lambda r: len(codec.encode_fields(fields, r)) <= schema.MAX_RECORD_BYTES)


def typed_message():
    """(type, record) over every message type."""
    return st.sampled_from(sorted(schema.MESSAGES)).flatmap(
        lambda t: message(t).map(lambda r: (t, r)))
