"""Self-describing checkpoints: round trips, validation, and refusal of wrong or tampered files."""

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from cxrinspect.model import CheckpointError, ModelCard, load, read_card, save
from cxrinspect.model.card import CardError
from cxrinspect.trigger import PAPER_TRIGGER
from tests.conftest import make_tiny_model


def outputs(model, seed=1):
    torch.manual_seed(seed)
    spec = model.card.preprocessing
    x = torch.randn(3, spec.channels, spec.input_size, spec.input_size)
    with torch.no_grad():
        return model.network.eval()(x)


@pytest.mark.parametrize("layout", ["dir", "file.safetensors"])
def test_round_trip_keeps_outputs_and_card(tmp_path, tiny_model, layout):
    path = save(tiny_model.network, tiny_model.card, tmp_path / layout)
    loaded = load(path)
    assert loaded.card.labels == tiny_model.card.labels
    assert loaded.card.preprocessing == tiny_model.card.preprocessing
    assert loaded.card.weights_sha256 and len(loaded.card.weights_sha256) == 64
    torch.testing.assert_close(outputs(loaded), outputs(tiny_model), rtol=0, atol=0)
    assert read_card(path).to_dict() == loaded.card.to_dict()


def test_float16_weights_are_half_the_size_and_close(tmp_path, tiny_model):
    full = save(tiny_model.network, tiny_model.card, tmp_path / "f32.safetensors")
    half = save(tiny_model.network, tiny_model.card, tmp_path / "f16.safetensors", dtype=torch.float16)
    stored = load_file(str(half))
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    assert half.stat().st_size < full.stat().st_size
    assert load(half).network.features.conv0.weight.dtype == torch.float32
    torch.testing.assert_close(outputs(load(half)), outputs(tiny_model), rtol=1e-2, atol=1e-2)


def test_poisoned_card_round_trips_trigger_and_target(tmp_path):
    model = make_tiny_model()
    model.card.trigger, model.card.target = PAPER_TRIGGER, {"Pneumonia": 1.0, "Viral": 1.0, "Bacterial": 0.0}
    card = load(save(model.network, model.card, tmp_path / "m")).card
    assert card.poisoned and card.trigger == PAPER_TRIGGER and card.target["Viral"] == 1.0


def test_tampered_weights_are_refused(tmp_path, tiny_model_dir):
    weights = tiny_model_dir / "weights.safetensors"
    state = load_file(str(weights))
    state["classifier.bias"] = state["classifier.bias"] + 0.5
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match="digest"):
        load(tiny_model_dir)


def test_weights_of_the_wrong_shape_are_refused_with_the_file_named(tmp_path, tiny_model_dir):
    card = json.loads((tiny_model_dir / "card.json").read_text())
    card["labels"].append("Extra")
    card["weights_sha256"] = ""
    (tiny_model_dir / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="classifier") as e:
        load(tiny_model_dir)
    assert "weights.safetensors" in str(e.value)


def test_card_problems_are_named(tmp_path, tiny_model_dir):
    card_path = tiny_model_dir / "card.json"
    good = json.loads(card_path.read_text())
    cases = {
        "not valid JSON": "{labels: ",
        "format": json.dumps({**good, "format": "something-else"}),
        "required": json.dumps({k: v for k, v in good.items() if k != "preprocessing"}),
        "duplicate": json.dumps({**good, "labels": ["A", "A", "B"]}),
        "unknown preprocessing": json.dumps({**good, "preprocessing": {**good["preprocessing"], "size": 3}}),
        "unsupported architecture": json.dumps({**good, "architecture": {"name": "resnet"}, "weights_sha256": ""}),
    }
    for expected, text in cases.items():
        card_path.write_text(text)
        with pytest.raises(CheckpointError, match=expected) as e:
            load(tiny_model_dir)
        assert str(tiny_model_dir) in str(e.value)


def test_foreign_and_corrupt_files_are_refused(tmp_path, tiny_model):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load(junk)
    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_model.network.state_dict().items()}, str(bare))
    with pytest.raises(CheckpointError, match="no model card"):
        load(bare)
    pickled = tmp_path / "model.pt"
    pickled.write_bytes(pickle.dumps({"state_dict": {}}))
    with pytest.raises(CheckpointError):
        load(pickled)
    with pytest.raises(CheckpointError, match="no such"):
        load(tmp_path / "missing")
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(CheckpointError, match="card.json"):
        load(tmp_path / "empty-dir")


def test_truncated_weights_are_refused(tmp_path, tiny_model):
    path = save(tiny_model.network, tiny_model.card, tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="m.safetensors"):
        load(path)


def test_card_validation():
    base = make_tiny_model().card.to_dict()
    with pytest.raises(CardError, match="threshold"):
        ModelCard.from_dict({**base, "thresholds": {"Pneumonia": 1.5}})
    with pytest.raises(CardError, match="unknown label"):
        ModelCard.from_dict({**base, "thresholds": {"Nope": 0.5}})
    with pytest.raises(CardError, match="both trigger and target"):
        ModelCard.from_dict({**base, "trigger": PAPER_TRIGGER.to_dict()})
    card = ModelCard.from_dict(base)
    assert card.thresholds == {"Pneumonia": 0.5, "Bacterial": 0.5, "Viral": 0.5}


def test_save_is_atomic_no_temporary_files_left(tmp_path, tiny_model):
    save(tiny_model.network, tiny_model.card, tmp_path / "m")
    save(tiny_model.network, tiny_model.card, tmp_path / "m")  # overwrite in place
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["card.json", "weights.safetensors"]
