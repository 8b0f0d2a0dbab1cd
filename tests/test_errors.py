"""Bad input gets the kit's own error, with a message that says what to do, and changes nothing."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPImageProcessor, LlavaProcessor

import qwenvl_diag as qd


def test_unknown_family_suggests_the_close_name():
    with pytest.raises(qd.UnknownFamilyError, match=r"Did you mean 'qwen2_5_vl'\?.*Known families"):
        qd.tiny_model("qwen25_vl")


def test_unknown_family_of_the_wrong_type():
    with pytest.raises(qd.UnknownFamilyError, match="Unknown Qwen-VL family 7"):
        qd.tiny_model(7)


def test_unknown_checkpoint_lists_what_ships():
    with pytest.raises(
        qd.UnknownCheckpointError, match=r"Did you mean 'Qwen/Qwen2.5-VL-7B-Instruct'.*Shipped"
    ):
        qd.twin("Qwen/Qwen2.5-VL-14B-Instruct")  # no such checkpoint


def test_errors_are_also_the_builtin_kinds_callers_catch():
    assert issubclass(qd.UnknownFamilyError, ValueError)
    assert issubclass(qd.UnknownCheckpointError, qd.QwenVLDiagError)


def test_unknown_input_kind(tiny_qwen25):
    _, processor = tiny_qwen25
    with pytest.raises(qd.UnknownInputKindError, match="choose one of image, batch, video, text, audio"):
        qd.sample_inputs(processor, "smell")


def test_bad_second_per_grid_ts_form(tiny_qwen25):
    _, processor = tiny_qwen25
    with pytest.raises(qd.UnknownInputKindError, match="must be None, 'list' or 'tensor'"):
        qd.sample_inputs(processor, "video", second_per_grid_ts="numpy")


def test_second_per_grid_ts_only_exists_for_qwen25_video(tiny_qwen25):
    _, processor = tiny_qwen25
    with pytest.raises(qd.UnknownInputKindError, match="only Qwen2.5-VL video inputs carry it"):
        qd.sample_inputs(processor, "image", second_per_grid_ts="tensor")


def test_processor_of_another_family_is_refused(tiny_qwen25):
    _, processor = tiny_qwen25
    llava = LlavaProcessor(image_processor=CLIPImageProcessor(), tokenizer=processor.tokenizer)
    with pytest.raises(qd.NotQwenVLError, match="needs a Qwen-VL processor.*got LlavaProcessor"):
        qd.sample_inputs(llava, "image")


def test_a_tokenizer_is_not_a_processor(tiny_qwen25):
    _, processor = tiny_qwen25
    with pytest.raises(qd.NotQwenVLError, match="got .*Tokenizer"):
        qd.sample_inputs(processor.tokenizer, "text")


def test_failed_sample_inputs_leaves_the_processor_as_it_was(tiny_qwen25):
    _, processor = tiny_qwen25
    before = (processor.tokenizer.padding_side, processor.image_processor.to_dict())
    with pytest.raises(qd.UnknownInputKindError):
        qd.sample_inputs(processor, "image", second_per_grid_ts="tensor")
    assert (processor.tokenizer.padding_side, processor.image_processor.to_dict()) == before


def test_load_model_of_a_missing_directory(tmp_path):
    with pytest.raises(qd.ModelLoadError, match="Could not load a checkpoint from"):
        qd.load_model(str(tmp_path / "nothing-here"))


def test_load_model_of_a_hub_id_offline_says_how_to_get_it():
    with pytest.raises(qd.ModelLoadError, match=r"hf download Qwen/Qwen2.5-VL-7B-Instruct.*qd.twin"):
        qd.load_model("Qwen/Qwen2.5-VL-7B-Instruct", local_files_only=True)


def test_load_model_of_another_architecture(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path)
    with pytest.raises(qd.NotQwenVLError, match="is a 'gpt2' model, not Qwen-VL"):
        qd.load_model(str(tmp_path))


def test_load_model_of_the_wrong_type():
    with pytest.raises(qd.ModelLoadError, match="takes a directory or a hub id; got int"):
        qd.load_model(3)


def test_load_model_round_trips_a_saved_checkpoint(tmp_path, tiny_qwen25):
    model, processor = tiny_qwen25
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, loaded_processor = qd.load_model(str(tmp_path))
    inputs = qd.sample_inputs(loaded_processor, "image")
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, model(**inputs).logits)
    assert type(loaded_processor) is type(processor)
