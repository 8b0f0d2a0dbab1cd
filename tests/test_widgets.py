"""qd.widgets: the panels follow their controls without a browser, and show what the public functions give."""

from __future__ import annotations

import sys

import matplotlib.pyplot as plt
import pytest
from packaging.version import Version

import qwenvl_diag as qd
from qwenvl_diag._compat import TRANSFORMERS_VERSION, transformers_at_least
from qwenvl_diag.presets import PRESETS

PNG = b"\x89PNG\r\n\x1a\n"
SEED_FIXED = transformers_at_least("4.52.1")


@pytest.fixture
def panel():
    return qd.widgets.PlacementPanel("Qwen/Qwen2.5-VL-7B-Instruct", gpus=2, memory_gib=24, strategy="auto")


def test_the_panel_shows_the_plan_the_planner_makes(panel):
    expected = qd.plan_device_map("Qwen/Qwen2.5-VL-7B-Instruct", 2, "24GiB", "auto")
    assert panel.plan.device_map == expected.device_map
    assert bytes(panel.strip.value).startswith(PNG) and bytes(panel.memory_plot.value).startswith(PNG)
    assert panel.error is None
    assert qd.widgets.PANEL_CLASS in panel.widget._dom_classes


def test_changing_a_control_replans_and_redraws(panel):
    before = bytes(panel.strip.value)
    panel.controls["gpus"].value = 8
    panel.controls["strategy"].value = "balanced"
    expected = qd.plan_device_map("Qwen/Qwen2.5-VL-7B-Instruct", 8, "24GiB", "balanced")
    assert panel.plan.device_map == expected.device_map and panel.plan.gpus == 8
    assert bytes(panel.strip.value).startswith(PNG) and bytes(panel.strip.value) != before
    # the seed's layout: the vision tower fills GPU 0, embed_tokens starts GPU 1
    assert "vision_embed_apart" in panel.status.value and "Risky" in panel.status.value
    assert "vision_embed_apart" in panel.flags.value
    panel.controls["memory_gib"].value = 80
    assert panel.plan.memory == 80 * 2**30
    assert panel.scenario.memory == "80GiB"


def test_explicit_split_points_build_the_map_and_flag_the_vision_tower_apart(panel):
    assert panel.controls["splits"].disabled and panel.controls["vision_gpu"].disabled
    panel.controls["strategy"].value = "explicit"
    assert not panel.controls["splits"].disabled
    panel.controls["splits"].value = "14"
    assert panel.plan.strategy == "explicit"
    assert panel.plan.device_map == qd.split_device_map("Qwen/Qwen2.5-VL-7B-Instruct", [14])
    assert "No risky layout" in panel.status.value and panel.flags.value == ""
    panel.controls["vision_gpu"].value = 1
    assert [flag.code for flag in panel.plan.flags] == ["vision_embed_apart"]
    assert "vision_embed_apart" in panel.flags.value
    assert panel.scenario.strategy == qd.split_device_map("Qwen/Qwen2.5-VL-7B-Instruct", [14], vision_gpu=1)


def test_invalid_settings_show_the_kits_message_and_clear_the_figures(panel):
    panel.controls["strategy"].value = "explicit"
    panel.controls["splits"].value = "14, x"
    assert panel.plan is None and "decoder-layer numbers separated by commas" in panel.error
    assert "Cannot plan this layout" in panel.status.value
    assert bytes(panel.strip.value) == b"" and bytes(panel.memory_plot.value) == b""
    assert panel.run() is None and "Fix the settings first" in panel.result.value
    panel.controls["splits"].value = "40"
    assert "lie in 1..27" in panel.error
    panel.controls["gpus"].value = 1
    panel.controls["splits"].value = "14"  # two GPUs' worth of layers on a one-GPU plan
    assert panel.plan is None and "GPU" in panel.error
    panel.controls["gpus"].value = 2
    assert panel.plan is not None and panel.error is None and bytes(panel.strip.value).startswith(PNG)


def test_a_panel_also_shows_a_static_copy_for_viewers_without_live_widgets(panel):
    bundle = panel._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.widget.model_id
    static = bundle["text/html"]
    assert panel.status.value in static and static.count("<img src='data:image/png;base64,") == 2
    panel.controls["strategy"].value = "explicit"
    panel.controls["splits"].value = "x"  # invalid: no figures, the message instead
    static = panel._repr_mimebundle_()["text/html"]
    assert "Cannot plan this layout" in static and "<img" not in static


def test_panels_leave_no_open_figures_behind(panel):
    open_before = plt.get_fignums()
    panel.controls["gpus"].value = 4
    assert plt.get_fignums() == open_before


def test_the_run_button_diagnoses_the_seed_layout():
    panel = qd.widgets.PlacementPanel(gpus=8, strategy="balanced", inputs="batch", action="generate")
    assert panel.scenario == qd.Scenario.preset("seed-batched")
    panel.button.click()
    diagnosis = panel.diagnosis
    assert isinstance(diagnosis, qd.Diagnosis) and diagnosis.scenario == panel.scenario
    assert "qwenvl-diag: Qwen/Qwen2.5-VL-7B-Instruct generate" in panel.result.value
    assert not panel.button.disabled
    if SEED_FIXED:
        assert diagnosis.ok and "no device error" in panel.result.value
    else:
        assert "found at least two devices, cuda:1 and cuda:0!" in panel.result.value
        assert "qwen2_5_vl-batched-causal-mask" in panel.result.value

    tabs = qd.widgets.DiagnosisPanel(diagnosis)
    assert list(tabs.widget.titles) == ["diagnosis", *diagnosis.frames]
    for name, frame in diagnosis.frames.items():
        assert tabs.pages[name].value.startswith(f"<p>{name}: {len(frame)} row")
    assert diagnosis.frames["placement"]["module"].iloc[0] in tabs.pages["placement"].value
    report = tabs.pages["diagnosis"].value  # the report without the folded frames the other tabs hold
    assert report == diagnosis._repr_html_().split("<details>")[0] + "</div>"
    assert qd.widgets.PANEL_CLASS in tabs.widget._dom_classes
    assert tabs._repr_mimebundle_()["text/html"] == diagnosis._repr_html_()  # the report with every frame


def test_a_checkpoint_this_transformers_lacks_is_shown_as_an_error_not_raised(panel):
    panel.controls["model"].value = "Qwen/Qwen3-VL-8B-Instruct"
    if transformers_at_least(qd.FAMILIES["qwen3_vl"].since):
        assert panel.plan is not None and panel.plan.model == "Qwen/Qwen3-VL-8B-Instruct"
    else:
        assert panel.plan is None and "qwen3_vl" in panel.error.lower().replace("-", "_")


def test_bad_arguments_raise_the_kits_errors():
    with pytest.raises(qd.InvalidArgumentError, match="shows a qd.Diagnosis"):
        qd.widgets.DiagnosisPanel({"error": "x"})
    with pytest.raises(qd.UnknownCheckpointError):
        qd.widgets.PlacementPanel("Qwen/NotAModel")
    with pytest.raises(qd.PlacementError, match="Unknown strategy"):
        qd.widgets.PlacementPanel(strategy="fastest")


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (
            {"gpus": 16},
            qd.InvalidArgumentError,
            "gpus is an int from 1 to 8; got 16",
        ),  # a slider would clamp it
        ({"memory_gib": 2}, qd.InvalidArgumentError, "memory_gib is an int from 4 to 192"),
        ({"vision_gpu": -1}, qd.InvalidArgumentError, "vision_gpu is an int from 0 to 7"),
        ({"gpus": 2.5}, qd.QwenVLDiagError, "gpus must be a positive int"),
        ({"inputs": "movie"}, qd.QwenVLDiagError, "Unknown inputs 'movie'"),
        ({"action": "train"}, qd.QwenVLDiagError, "Unknown action 'train'"),
    ],
)
def test_starting_values_the_controls_cannot_hold_are_refused_with_the_kits_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        qd.widgets.PlacementPanel(**kwargs)


def test_without_ipywidgets_the_panels_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # what an environment without it looks like
    with pytest.raises(qd.QwenVLDiagError, match=r"pip install 'qwenvl-diag\[notebooks\]'"):
        qd.widgets.PlacementPanel()


def test_the_verify_panel_runs_verify_and_colours_the_rows_by_verdict():
    from qwenvl_diag.tables import VERDICT_COLOURS

    panel = qd.widgets.VerifyPanel("seed-video", fixes=["second_per_grid_ts_as_list", "single_device"])
    assert panel.scenario == qd.Scenario.preset("seed-video")
    assert "video inputs, forward" in panel.described.value
    panel.button.click()
    frame = panel.frame
    assert list(frame["fix"]) == ["second_per_grid_ts_as_list", "single_device"]
    expected = (
        ["not needed", "not needed"] if SEED_FIXED else ["fixed", "not fixed"]
    )  # the video bug lives in 4.49.0-4.51.3, and one GPU does not avoid it
    assert list(frame["verdict"]) == expected
    for verdict in expected:
        assert VERDICT_COLOURS[verdict] in panel.table.value
    assert panel.table.value in panel._repr_mimebundle_()["text/html"]
    assert not panel.button.disabled
    panel.controls["scenario"].value = "seed-batched"  # another failure: the old table goes
    assert panel.table.value == "" and "batch inputs, generate" in panel.described.value


def test_the_verify_panel_preselects_the_fixes_that_run_here_and_takes_your_scenario():
    mine = qd.Scenario("Qwen/Qwen2.5-VL-3B-Instruct", gpus=4, inputs="image")
    panel = qd.widgets.VerifyPanel(mine)
    assert panel.controls["scenario"].value == "yours" and panel.scenario is mine
    assert set(panel.controls["scenario"].options) == {*PRESETS, "yours"}
    chosen = set(panel.controls["fixes"].value)
    assert chosen == set(qd.fixes()["name"]) - {"upgrade_transformers"}  # the one that needs an index
    panel.controls["fixes"].value = ()
    assert panel.verify() is None and "Choose at least one fix" in panel.table.value
    with pytest.raises(qd.InvalidArgumentError, match="a qd.Scenario or a preset name"):
        qd.widgets.VerifyPanel("seed-everything")
    with pytest.raises(qd.UnknownFixError):
        qd.widgets.VerifyPanel(fixes=["single_gpu"])


VIDEO_REPORT = (
    "Traceback (most recent call last):\n"
    '  File "/home/u/site-packages/transformers/models/qwen2_5_vl/modeling_qwen2_5_vl.py", line 1645, '
    "in get_rope_index\n"
    "    time_tensor = expanded_range * second_per_grid_t\n"
    "RuntimeError: Expected all tensors to be on the same device, but found at least two devices, "
    "cuda:0 and cpu!\n"
    "transformers==4.51.3\n"
)


def test_the_triage_panel_explains_what_is_pasted_and_reproduces_it(monkeypatch):
    from pathlib import Path

    from qwenvl_diag import versions

    monkeypatch.setenv("QWENVL_DIAG_CACHE", str(Path(__file__).resolve().parents[1] / "test-output"))
    panel = qd.widgets.TriagePanel(VIDEO_REPORT)  # a text given is explained at once
    assert panel.explanation.best["id"] == "qwen2_5_vl-video-second-per-grid-ts"
    assert not panel.buttons["reproduce"].disabled
    shown = panel.result.value
    assert "Known bugs it points to" in shown and "fixed in 4.52.1" in shown and "cuda:0, cpu" in shown
    assert "qwen2_5_vl-video-second-per-grid-ts (confidence " in shown
    assert qd.widgets.PANEL_CLASS in panel.widget._dom_classes
    if TRANSFORMERS_VERSION != Version("4.51.3"):
        versions.side_env("4.51.3")  # made beforehand, as `make lab` does: the panel builds none
        frame = panel.reproduce()  # in the version lab's 4.51.3
        row = frame.iloc[0]
        assert (row["outcome"], row["line"], row["known_bug"]) == (
            "failed",
            1645,
            "qwen2_5_vl-video-second-per-grid-ts",
        )
        assert "In transformers 4.51.3 (version lab)" in panel.reproduction.value
    else:
        diagnosis = panel.reproduce()  # here: this is the reported release
        assert "cuda:0 and cpu!" in diagnosis.error and diagnosis.first_mismatch["line"] == 1645
        assert "qwen2_5_vl-video-second-per-grid-ts" in panel.reproduction.value
    assert panel.reproduced is not None and not panel.buttons["reproduce"].disabled
    # a new paste: Explain again replaces the result and forgets the reproduction
    panel.box.value = "torch.OutOfMemoryError: CUDA out of memory."
    assert not panel.explain().recognised
    assert panel.reproduced is None and panel.reproduction.value == "" and panel.buttons["reproduce"].disabled
    assert "Not recognised" in panel.result.value
    assert panel.reproduce() is None and "Explain a report first" in panel.reproduction.value


def test_the_triage_panel_starts_empty_and_refuses_what_is_not_text():
    panel = qd.widgets.TriagePanel()
    assert panel.explanation is None and panel.result.value == "" and panel.buttons["reproduce"].disabled
    assert panel.reproduce() is None and "Explain a report first" in panel.reproduction.value
    with pytest.raises(qd.InvalidArgumentError, match="TriagePanel takes the pasted text as a str"):
        qd.widgets.TriagePanel(["a traceback"])
