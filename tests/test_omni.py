"""The Omni thinkers (Qwen2.5-Omni, Qwen3-Omni): the part of an Omni checkpoint that reads images, video,
audio and text, built from the checkpoint's config, with its real processor and an "audio" input kind."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import family_available, refusal

import qwenvl_diag as qd
from qwenvl_diag.models.catalog import checkpoint_config, checkpoint_file

OMNI = {"qwen2_5_omni": "Qwen/Qwen2.5-Omni-7B", "qwen3_omni_moe": "Qwen/Qwen3-Omni-30B-A3B-Instruct"}
# the audio placeholder of each family's real tokenizer_config, and its id there
AUDIO_TOKEN = {"qwen2_5_omni": ("<|AUDIO|>", 151646), "qwen3_omni_moe": ("<|audio_pad|>", 151675)}


@pytest.fixture(scope="module", params=list(OMNI))
def family(request):
    return request.param


def test_the_family_names_a_thinker_class_or_the_kit_says_which_release_it_needs(family):
    if family_available(family):
        import transformers

        assert hasattr(transformers, qd.FAMILIES[family].thinker)
        return
    for call in (lambda: qd.tiny_model(family), lambda: qd.twin(OMNI[family])):
        with pytest.raises(qd.UnsupportedReleaseError, match=refusal(OMNI[family])):
            call()


def test_the_twin_is_the_checkpoints_thinker_with_its_real_audio_token(family):
    if not family_available(family):
        return  # refused above
    model, processor = qd.twin(OMNI[family])
    assert type(model).__name__ == qd.FAMILIES[family].thinker
    full = checkpoint_file(OMNI[family], "config.json")
    assert full["model_type"] == family and model.config.model_type == f"{family}_thinker"
    # the thinker's config is the checkpoint's thinker_config: its depths as published (or as defaulted)
    thinker = full["thinker_config"]
    assert model.config.get_text_config().num_hidden_layers == thinker["text_config"]["num_hidden_layers"]
    assert model.config.audio_config.encoder_layers == thinker["audio_config"]["encoder_layers"]
    names = [name for name, _ in model.named_modules()]
    assert any(name.endswith("audio_tower") for name in names) and not any("talker" in n for n in names)
    token, real_id = AUDIO_TOKEN[family]
    assert processor.tokenizer.convert_tokens_to_ids(token) == real_id
    audio_key = "audio_token_id" if "audio_token_id" in thinker else "audio_token_index"
    assert getattr(model.config, audio_key) == real_id


def test_audio_inputs_reach_the_audio_tower_and_the_thinker_answers(family):
    if not family_available(family):
        return
    model, processor = qd.tiny_model(family)
    inputs = qd.sample_inputs(processor, "audio")
    assert inputs["input_features"].shape[1] == 128  # Whisper's mel bins, from the real preprocessor
    assert inputs["feature_attention_mask"].sum() > 0
    audio_id = processor.tokenizer.convert_tokens_to_ids(processor.audio_token)
    placeholders = int((inputs["input_ids"] == audio_id).sum())
    assert placeholders > 0
    before = copy.deepcopy(dict(inputs))
    with torch.no_grad():
        logits = model(**inputs).logits
    generated = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert torch.isfinite(logits).all()
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 3
    assert all(torch.equal(before[k], inputs[k]) for k in before)


def test_an_omni_twin_splits_across_simulated_gpus_and_runs_audio_and_image(family):
    if not family_available(family):
        with pytest.raises(qd.UnsupportedReleaseError):
            qd.run(qd.Scenario(OMNI[family], gpus=4, memory="24GiB", inputs="audio"))
        return
    for inputs, action in (("audio", "forward"), ("image", "generate")):
        diagnosis = qd.run(qd.Scenario(OMNI[family], gpus=4, memory="24GiB", inputs=inputs, action=action))
        assert diagnosis.error is None, diagnosis.error
        placement = diagnosis.frames["placement"]
        assert len(set(placement["device"])) >= 2
        # the whole audio encoder is one unsplittable block (`_no_split_modules`): on one device
        audio = placement[placement["kind"] == "audio"]
        assert len(audio) == 1 and audio["module"].iloc[0].endswith("audio_tower"), placement
    rope = diagnosis.frames["rope"]
    assert not rope.empty and "image_grid_thw" in set(rope["argument"])


def test_audio_is_refused_by_a_processor_that_takes_none(tiny_qwen25):
    _, processor = tiny_qwen25
    with pytest.raises(qd.UnknownInputKindError, match="'audio' inputs need an Omni thinker's processor"):
        qd.sample_inputs(processor, "audio")


def test_library_defaults_say_what_they_add_and_the_twin_reads_it():
    if not family_available("qwen2_5_omni"):
        return
    config = checkpoint_config("Qwen/Qwen2.5-Omni-7B")
    # the thinker's defaults name no vision start/end tokens; the tokenizer's ids for them are used
    assert (config["vision_start_token_id"], config["vision_end_token_id"]) == (151652, 151653)
    assert config["architectures"] == ["Qwen2_5OmniThinkerForConditionalGeneration"]
    model, processor = qd.twin("Qwen/Qwen2.5-Omni-7B")
    assert processor.tokenizer.convert_ids_to_tokens(151652) == "<|vision_bos|>"
    assert model.config.vision_start_token_id == 151652


def test_load_model_of_a_whole_omni_checkpoint_gives_its_thinker_with_the_saved_weights(tmp_path):
    """The model card's thinker-only path: the thinker class from the whole checkpoint, weights and all."""
    if not family_available("qwen3_omni_moe"):
        return  # refused above
    import transformers

    from qwenvl_diag.models.build import config_from_dict
    from qwenvl_diag.models.shrink import set_depth, shrink_config

    whole = checkpoint_file(OMNI["qwen3_omni_moe"], "config.json")
    whole["thinker_config"] = set_depth(shrink_config(whole["thinker_config"]), 2, 2)
    whole["enable_audio_output"] = False  # no talker: the thinker is what is saved and loaded
    saved = transformers.Qwen3OmniMoeForConditionalGeneration._from_config(config_from_dict(whole))
    saved.save_pretrained(tmp_path)
    qd.twin(OMNI["qwen3_omni_moe"])[1].save_pretrained(tmp_path)
    model, processor = qd.load_model(tmp_path)
    assert type(model).__name__ == "Qwen3OmniMoeThinkerForConditionalGeneration"
    assert type(processor).__name__ == "Qwen3OmniMoeProcessor"
    expected = dict(saved.thinker.named_parameters())
    loaded = dict(model.named_parameters())
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[name], expected[name]) for name in expected)


def test_a_video_with_its_sound_track_puts_both_in_the_clips_span(family):
    """`use_audio_in_video`: the processor puts the clip's audio tokens in the clip's own span (Qwen3-Omni
    interleaves them with the frames by position, Qwen2.5-Omni by 2-second chunk), and the thinker's rope
    index takes both; a diagnosis on four simulated GPUs runs it."""
    if not family_available(family):
        return
    model, processor = qd.tiny_model(family)
    inputs = qd.sample_inputs(processor, "video_audio")
    assert inputs["use_audio_in_video"] is True
    ids = inputs["input_ids"][0].tolist()
    tokenizer = processor.tokenizer
    audio_at, video_at, start_at = (
        [i for i, t in enumerate(ids) if t == tokenizer.convert_tokens_to_ids(token)]
        for token in (processor.audio_token, processor.video_token, tokenizer.vision_bos_token)
    )
    assert audio_at and video_at and len(start_at) == 1
    span = ids[start_at[0] : max(audio_at + video_at) + 1]  # from the clip's start: media tokens, no text
    assert tokenizer.decode(span, skip_special_tokens=True).strip() == ""
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()
    diagnosis = qd.run(
        qd.Scenario(f"tiny/{family}", gpus=4, memory="24GiB", inputs="video_audio", action="generate")
    )
    assert diagnosis.error is None or diagnosis.first_mismatch["file"].endswith(f"modeling_{family}.py")
    assert "True" in set(diagnosis.frames["rope"]["summary"])  # use_audio_in_video reached the rope index
