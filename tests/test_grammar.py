"""The generate() grammar accepts exactly the department lists the trie decoder can produce."""

from router.codec import LabelCodec
from router.grammar import allowed_next


def test_grammar_walks_a_valid_answer_and_nothing_else(tokenizer):
    codec = LabelCodec.for_tokenizer(tokenizer)
    answer = codec.answer_ids(["Warehouse", "Packaging"])
    for i, token in enumerate(answer):
        assert token in allowed_next(codec, answer[:i]), f"step {i} refused a valid token"
    start = allowed_next(codec, [])
    assert codec.eos_id not in start, "never an empty answer"
    assert len(start) == 7
    after_packaging = allowed_next(codec, codec.answer_ids(["Packaging"])[:-1] + list(codec.sep_ids))
    assert sorted(after_packaging) == [codec.name_ids[6][0]], "only Marketing may follow Packaging"
    assert allowed_next(codec, codec.answer_ids(["Marketing"])[:-1]) == [codec.eos_id]
