"""An offline stand-in for the Qwen tokenizer: one token per character plus the real special tokens.

The real tokenizer is a byte-level BPE of ~151k tokens that only the hub has. Device placement does
not depend on how text splits, only on the special tokens (image/video pads, vision start/end, eos,
pad) and the chat template, which come from the checkpoint's real tokenizer_config.json.
"""

from __future__ import annotations

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

UNK_TOKEN = "<|unk|>"
_CHARACTERS = [chr(i) for i in range(32, 127)] + ["\n", "\t", UNK_TOKEN]


def special_tokens(tokenizer_config: dict) -> dict[int, str]:
    """{real id: token} of the added tokens in a real tokenizer_config.json."""
    return {int(i): t["content"] for i, t in tokenizer_config["added_tokens_decoder"].items()}


def build_tokenizer(specials: dict[int, str], real_ids: bool) -> Tokenizer:
    """A character-level `tokenizers.Tokenizer` carrying `specials`.

    With `real_ids` the special tokens keep their real ids (so a twin's config, with the real
    `image_token_id` etc., matches) and the gap between the characters and them is filled with
    reserved tokens, as in the real vocabulary; otherwise they follow the characters (tiny models).
    """
    vocab = {ch: i for i, ch in enumerate(_CHARACTERS)}
    ordered = [specials[i] for i in sorted(specials)]
    if real_ids:
        vocab.update({f"<|reserved_{i}|>": i for i in range(len(vocab), min(specials))})
        vocab.update({tok: i for i, tok in specials.items()})
    else:
        vocab.update({tok: len(_CHARACTERS) + k for k, tok in enumerate(ordered)})
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ordered])
    return tokenizer
