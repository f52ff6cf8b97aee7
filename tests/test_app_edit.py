"""The app's edit view: the same SHIFT ranking and edit as `vizneuron shift`.

Driven through Streamlit's own testing API (AppTest), with a private home folder and real images."""

from __future__ import annotations

from pathlib import Path

import pytest

from vizneuron.models.default import WEIGHTS_DIR

from helpers import errors, make_app

pytest.importorskip("streamlit")
SAE_FILE = "cue_biased_layer3_sae.safetensors"  # the bundled SAE of the cue-biased model's layer3
CONCEPTS = ("cue", "cat", "dog")


def ranked_in_app(monkeypatch, tmp_path: Path, cue_task: Path):
    """The app on the cue-biased model, its Edit view ranking the 64 top features of the task's SAE."""
    (cue_task / "saes").mkdir(exist_ok=True)
    (cue_task / "saes" / "cue.safetensors").write_bytes((WEIGHTS_DIR / SAE_FILE).read_bytes())
    at = make_app(monkeypatch, tmp_path, cue_task)
    at.sidebar.radio(key="model_source").set_value("model spec").run()
    at.sidebar.text_input(key="model_spec").input("default:cue-biased").run()
    at.radio(key="view").set_value("Edit").run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    at.radio(key="edit_units").set_value("SAE cue").run()
    at.text_input(key="edit_train").input(str(cue_task / "train-biased"))
    at.text_area(key="edit_concepts").input("\n".join(f"{c}={cue_task / 'concepts' / c}" for c in CONCEPTS))
    at.number_input(key="edit_top").set_value(64)
    at.number_input(key="edit_rank_images").set_value(200).run()
    at.button(key="edit_rank").click().run()
    return at


def test_edit_view_ranks_ticks_applies_and_opens_the_edited_model(monkeypatch, tmp_path, cue_task):
    at = ranked_in_app(monkeypatch, tmp_path, cue_task)
    assert not at.exception and not errors(at), (at.exception, errors(at))
    picks = [box for box in at.checkbox if box.key.startswith("edit_pick_")]
    assert len(picks) == 64 and any(box.value for box in picks)  # the proposed ones come ticked
    first = next(box for box in picks if box.value)
    first.uncheck().run()  # a person drops one
    ticked = sum(box.value for box in at.checkbox if box.key.startswith("edit_pick_"))
    at.text_input(key="edit_test").input(str(cue_task / "test-balanced"))
    at.checkbox(key="edit_retrain").check().run()
    at.button(key="edit_apply").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    table = at.dataframe[-1].value
    assert list(table["model"]) == ["original", "SHIFT", "SHIFT + retrain"] and "cat/plain" in table.columns
    assert f"{ticked} units ablated" in " ".join(c.value for c in at.caption)
    at.button(key="edit_explore").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    assert at.radio(key="view").value == "Neuron" and at.sidebar.text_input(key="model_spec").value.startswith("edit:")
    assert any("edit:" in c.value for c in at.caption)  # the neuron view now shows the edited network



@pytest.mark.slow
def test_one_click_runs_the_bundled_cue_task_and_opens_the_edited_model(monkeypatch, tmp_path):
    """From the bundled model's Edit view, one click: the cue-biased model, its bundled SAE, the cue task
    made from the bundled sample, ranked, applied and scored per group (no data of the user's)."""
    at = make_app(monkeypatch, tmp_path)
    at.radio(key="view").set_value("Edit").run()
    at.button(key="edit_try").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    assert at.sidebar.text_input(key="model_spec").value == "default:cue-biased"
    assert at.radio(key="edit_units").value == "SAE cue_biased_layer3_sae"
    picks = [box for box in at.checkbox if box.key.startswith("edit_pick_")]
    assert len(picks) == 256 and any(box.value for box in picks)
    table = {row["model"]: row for row in at.dataframe[-1].value.to_dict("records")}
    assert list(table) == ["original", "SHIFT"]
    percent = lambda text: float(text.rstrip("%"))  # noqa: E731
    assert percent(table["original"]["cat/cue"]) > percent(table["original"]["cat/plain"])  # the model uses the cue
    assert percent(table["SHIFT"]["worst group"]) > percent(table["original"]["worst group"])  # the edit helps
    assert any("bundled cue task" in c.value for c in at.caption)
    at.button(key="edit_explore").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    assert at.radio(key="view").value == "Neuron" and at.sidebar.text_input(key="model_spec").value.startswith("edit:")


def test_the_edit_view_and_the_cli_give_the_same_per_group_table(monkeypatch, tmp_path, cue_task):
    """One library path: the app's Edit view (rank, keep the proposed ticks, apply) and `vizneuron shift`
    with the same settings hold the same units at the same mean and score the same on every group."""
    import json

    from vizneuron.cli import main

    at = ranked_in_app(monkeypatch, tmp_path, cue_task)
    proposed = [box.key.removeprefix("edit_pick_") for box in at.checkbox if box.key.startswith("edit_pick_")
                and box.value]
    at.text_input(key="edit_test").input(str(cue_task / "test-balanced")).run()
    at.button(key="edit_apply").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    app_table = at.dataframe[-1].value.to_dict("records")

    out = tmp_path / "cli"
    assert main(["shift", "default:cue-biased", "--layer", "layer3", "--sae", str(WEIGHTS_DIR / SAE_FILE),
                 "--data", str(cue_task / "train-biased"), "--top", "64", "--max-images", "200",
                 "--test", str(cue_task / "test-balanced"), "--no-retrain", "--steps", "0", "--quiet",
                 "--out", str(out)] + [f"--concept={c}={cue_task / 'concepts' / c}" for c in CONCEPTS]) == 0
    saved = json.loads((out / "shift.json").read_text())
    assert [u.removeprefix("layer3/sae:") for u in saved["ablated"]] == [u.split(":")[1] for u in proposed]
    assert len(proposed) > 0 and [row["model"] for row in app_table] == ["original", "SHIFT"]
    for row in app_table:
        scores = saved["scores"][row["model"]]
        groups = {g: f"{a:.1%}" for g, a in scores["groups"].items()}
        assert {g: row[g] for g in groups} == groups and row["balanced"] == f"{scores['balanced']:.1%}"
        assert row["worst group"] == f"{scores['worst']:.1%}"
