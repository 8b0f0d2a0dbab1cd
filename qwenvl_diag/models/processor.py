"""Build a family's real processor classes offline, through transformers' own loader.

The files a checkpoint directory would hold (tokenizer, preprocessor and chat-template configs) are
written to a temporary directory and read back with `AutoProcessor.from_pretrained`, so each
transformers release picks its own processor, image and video processor classes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from .._compat import tokenizer_class_name
from .catalog import checkpoint_file
from .families import Family
from .tokenizer import UNK_TOKEN, build_tokenizer, special_tokens


def _file_source(family: Family, checkpoint: str | None, filename: str) -> str | None:
    """The first of the checkpoint, the family's reference and the checkpoint it borrows from that ships
    `filename`, or None."""
    for source in (checkpoint, family.reference, family.borrows):
        if source and checkpoint_file(source, filename) is not None:
            return source
    return None


def checkpoint_or_reference_file(family: Family, checkpoint: str | None, filename: str) -> dict | None:
    """`filename` of the checkpoint when it ships one, else of the family's reference checkpoint, else
    (for a family that borrows another's processor files) of the checkpoint it borrows from."""
    source = _file_source(family, checkpoint, filename)
    return checkpoint_file(source, filename) if source else None


def family_specials(family: Family, checkpoint: str | None) -> dict[int, str]:
    """{id: token} of the special tokens of the checkpoint's (or its family's) tokenizer.

    A family that borrows another's tokenizer files (Qwen3.5 and Qwen4-Exp take Qwen3-VL's) keeps the
    borrowed tokens in their order, shifted so that the vision tokens land on the ids the model's config
    names (Qwen3.5's <|image_pad|> is 248056 where Qwen3-VL's is 151655: the same tokens, 96401 on).
    """
    source = _file_source(family, checkpoint, "tokenizer_config.json")
    specials = special_tokens(checkpoint_file(source, "tokenizer_config.json"))
    # a checkpoint of the same family lends its files at its own ids (Qwen2.5-Omni-3B's, for the 7B)
    borrowed = checkpoint_file(source, "config.json") if source == family.borrows else None
    if borrowed is None:
        return specials
    own = checkpoint_or_reference_file(family, checkpoint, "config.json")
    shift = own["image_token_id"] - borrowed["image_token_id"]
    return {i + shift: token for i, token in specials.items()}


def token_ids(family: Family, checkpoint: str | None, real_ids: bool) -> dict[str, int]:
    """{special token: id} as the processor built with the same arguments numbers them."""
    specials = family_specials(family, checkpoint)
    tokenizer = build_tokenizer(specials, real_ids)
    return {tok: tokenizer.token_to_id(tok) for tok in specials.values()}


def build_processor(family: Family, checkpoint: str | None = None, real_ids: bool = True):
    """The family's processor, with the checkpoint's (or the reference's) real configs."""
    # transformers' processor module imports the image processors and, through them, torchvision
    # (about 2 s): it is imported when a processor is made, not with the kit
    from transformers import AutoProcessor

    tok_config = checkpoint_or_reference_file(family, checkpoint, "tokenizer_config.json")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(family_specials(family, checkpoint), real_ids), unk_token=UNK_TOKEN
    )
    # older checkpoints keep the template in tokenizer_config.json, newer ones (Qwen3-Omni) beside it
    chat_template = (
        tok_config.get("chat_template")
        or (checkpoint_or_reference_file(family, checkpoint, "chat_template.json")["chat_template"])
    )
    with tempfile.TemporaryDirectory(prefix="qwenvl-diag-processor-") as tmp:
        root = Path(tmp)
        tokenizer.save_pretrained(root)
        saved = json.loads((root / "tokenizer_config.json").read_text())
        saved.pop("added_tokens_decoder", None)  # ids differ from the real file when not real_ids
        saved.update(
            tokenizer_class=tokenizer_class_name(),
            chat_template=chat_template,
            eos_token=tok_config["eos_token"],
            pad_token=tok_config["pad_token"],
            model_max_length=tok_config.get("model_max_length", 131072),
            padding_side="left",  # what every Qwen-VL batched-inference example sets
        )
        if "extra_special_tokens" in tok_config:  # the Omni processors read tokenizer.image_token etc.
            saved["extra_special_tokens"] = tok_config["extra_special_tokens"]
        (root / "tokenizer_config.json").write_text(json.dumps(saved))
        (root / "chat_template.json").write_text(json.dumps({"chat_template": chat_template}))
        for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
            data = checkpoint_or_reference_file(family, checkpoint, name)
            if data is not None:
                data["processor_class"] = family.processor_class
                (root / name).write_text(json.dumps(data))
        # 4.52's AutoVideoProcessor falls back to the model config to pick its class, as in a checkpoint
        (root / "config.json").write_text(
            json.dumps(checkpoint_or_reference_file(family, checkpoint, "config.json"))
        )
        return AutoProcessor.from_pretrained(tmp)
