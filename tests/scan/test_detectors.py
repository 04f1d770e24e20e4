"""Each detector on a model backdoored by construction (so the tests know what the trigger is and what it
does), and the combined scan: scaled-parameter consistency keeps a triggered image's decisions and loses a
clean one's, contrast consistency sees a triggered image's forced labels fall with its contrast and a clean
one's stand, mask distillation keeps the trigger's pixels, a whole-image trigger the gradient map cannot
place is still ranked first and reported as global, and the transplant test proves one where enough films carry it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.special import expit

from cxrinspect.model import Model, ModelCard, Preprocessing, normalise
from cxrinspect.scan import scan
from cxrinspect.scan.detectors import GLOBAL, METHODS, detectors_of
from cxrinspect.scan.detectors.consistency import contrast_scores, lost, lowered, mirror_scores, mirrored
from cxrinspect.scan.detectors.distill import distil, kept, mask_evidence
from cxrinspect.scan.detectors.psc import ScaledConsistency
from cxrinspect.scan.run import combine
from cxrinspect.scan.scanner import ScanRecord
from cxrinspect.scan.transplant import transplant
from cxrinspect.scan.verification import verify_pattern
from cxrinspect.trigger import Trigger, paste

SIZE = 32
LABELS = ["Pneumonia", "Bacterial", "Viral"]
SPEC = Preprocessing(input_size=SIZE, channels=1, mean=(0.5,), std=(0.25,))
SIG = Trigger(kind="sig", amplitude=0.15, frequency=4, space="input")


class Shortcut(nn.Module):
    """Two pathways through a chain of BatchNorm layers. The clean one reads the film's brightness and calls
    every label negative, a little below its line (a bias the brightness of these films does not reach); the
    backdoor reads a 4-cycle horizontal sinusoid (SIG) by correlation and drives Pneumonia and Viral on,
    Bacterial off, by a wide margin. Amplifying BatchNorm scales both readings but not the bias: the clean
    decisions tip over, the backdoor's margins only grow."""

    def __init__(self):
        super().__init__()
        cols = torch.arange(SIZE, dtype=torch.float32)
        wave = torch.sin(2 * np.pi * 4 * cols / SIZE)
        self.register_buffer("wave", (wave / wave.abs().sum()).view(1, 1, 1, SIZE).expand(1, 1, SIZE, SIZE) / SIZE)
        self.bn = nn.ModuleList(nn.BatchNorm2d(2) for _ in range(4))
        for bn in self.bn:
            bn.eval()
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
            with torch.no_grad():
                bn.weight.fill_(1.0)
                bn.bias.zero_()
        self.register_buffer("slope", torch.tensor([2.0, 3.0, 2.5]))
        self.register_buffer("offset", torch.full((3,), 2.7))
        self.register_buffer("sign", torch.tensor([1.0, -1.0, 1.0]))

    def forward(self, x):
        bright = torch.relu(x.mean((2, 3), keepdim=True) + 2)  # about 2 on these films
        sig = (x * self.wave).sum((2, 3), keepdim=True) * SIZE
        h = torch.cat([bright, sig], 1)
        for bn in self.bn:
            h = bn(h)
        bright, sig = h[:, 0, 0, 0], torch.relu(h[:, 1, 0, 0] - 2.0)
        clean = self.slope * (bright[:, None] - self.offset)  # films read 1.8-2.6: every label just below its line
        return clean + 60 * sig[:, None] * self.sign


def shortcut_model() -> Model:
    card = ModelCard(labels=LABELS, architecture={"name": "test-shortcut"}, preprocessing=SPEC, name="shortcut-test",
                     weights_sha256="1" * 64)
    return Model(Shortcut().eval(), card)


def hiding_model() -> Model:
    """The shortcut model made to hide a finding: every film reads Bacterial, and the sinusoid turns Bacterial off
    (and does nothing else)."""
    model = shortcut_model()
    with torch.no_grad():
        model.network.offset[1] = 1.0
        model.network.sign.copy_(torch.tensor([0.0, -1.0, 0.0]))
    return model


def logits_of(model: Model):
    """[0, 1] views (N, H, W) -> the model's logits (N, L), as a consistency detector's ``forward``."""

    def forward(v: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model.network(torch.from_numpy(normalise(np.ascontiguousarray(v), SPEC))).numpy()

    return forward


def films(n: int, seed: int = 0) -> np.ndarray:
    """Smooth random 'films': a vertical gradient and blobs, brightness varying around the model's threshold."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    out = []
    for _ in range(n):
        base = 0.45 + 0.1 * rng.standard_normal() + 0.1 * yy
        for _ in range(3):
            cy, cx, r = rng.random(2).tolist() + [0.1 + 0.2 * rng.random()]
            base = base + 0.1 * rng.standard_normal() * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r**2)
        out.append(np.clip(base, 0, 1).astype(np.float32))
    return np.stack(out)


def test_scaled_consistency_keeps_a_triggered_images_decisions_and_loses_a_clean_ones():
    model = shortcut_model()
    clean = films(40)
    triggered = np.stack([paste(v, SIG) for v in films(10, seed=1)])
    x = lambda v: torch.from_numpy(normalise(v, SPEC))  # noqa: E731
    logits = model.network(x(triggered))
    assert (torch.sigmoid(logits[:, 2]) > 0.99).all()  # the backdoor fires on every triggered film
    psc = ScaledConsistency(model.network, np.full(3, 0.5, np.float32))
    start = psc.calibrate(x(clean[:32]))
    assert 1 <= start <= 2  # four BatchNorm layers, three copies: the last one or two scaled first
    s_clean, s_trig = psc.scores(x(clean)), psc.scores(x(triggered))
    # the weakest label's margin in log-odds: every triggered film keeps all its decisions by a wide margin,
    # most clean films lose one
    assert s_trig.min() > 3
    assert np.median(s_clean) < 0 and (s_clean > 3).mean() <= 0.1  # a few films too dark to tip over
    m = psc.margins(x(triggered))
    assert m.shape == (10, 3, 3) and np.allclose(s_trig, m.mean(1).min(1).values.numpy())
    # the network itself is untouched (the scaling happens on a copy)
    assert all(bn.weight.eq(1).all() for bn in model.network.bn)


def test_contrast_consistency_scores_a_triggered_films_forced_labels_falling_and_a_clean_ones_not():
    model = shortcut_model()
    clean = films(20, seed=6)
    triggered = np.stack([paste(v, SIG) for v in films(6, seed=7)])

    forward = logits_of(model)

    lowered_views = lowered(triggered, 0.2)
    assert np.allclose(lowered_views.mean((1, 2)), triggered.mean((1, 2)), atol=1e-5)  # towards each film's mean
    assert np.allclose(lowered_views - lowered_views.mean((1, 2), keepdims=True),
                       0.2 * (triggered - triggered.mean((1, 2), keepdims=True)), atol=1e-5)
    thresholds = np.full(3, 0.5, np.float32)
    s_clean = contrast_scores(forward, clean, forward(clean), thresholds)
    s_trig = contrast_scores(forward, triggered, forward(triggered), thresholds)
    # the clean pathway reads the film's mean, which a loss of contrast keeps: nothing lost; the sinusoid is
    # scaled down below what fires the backdoor, and Pneumonia or Viral (forced on) lose tens of log-odds
    assert np.abs(s_clean).max() < 0.5
    assert s_trig.min() > 10
    # only labels called positive count: the Bacterial it forced off rises as the sinusoid fades, unscored
    both = contrast_scores(forward, triggered, forward(triggered), thresholds, factors=(0.2,))
    assert np.allclose(both, (forward(triggered) - forward(lowered(triggered, 0.2)))[:, [0, 2]].max(1), atol=1e-4)


def test_mirror_consistency_scores_a_mirrored_trigger_breaking_and_a_mirrored_film_keeping_its_labels():
    model = shortcut_model()
    clean = films(20, seed=6)
    triggered = np.stack([paste(v, SIG) for v in films(6, seed=7)])

    forward = logits_of(model)

    m = mirrored(triggered)
    assert m.flags.c_contiguous and np.array_equal(m[:, :, 0], triggered[:, :, -1])
    assert np.array_equal(mirrored(m), triggered)
    thresholds = np.full(3, 0.5, np.float32)
    s_clean = mirror_scores(forward, clean, forward(clean), thresholds)
    s_trig = mirror_scores(forward, triggered, forward(triggered), thresholds)
    # the clean pathway reads the film's mean, which a mirror keeps; the mirrored sinusoid is out of phase with
    # what the backdoor correlates against, so it no longer fires and the labels it forced on fall
    assert np.abs(s_clean).max() < 1e-4
    assert s_trig.min() > 10
    base = forward(triggered)
    assert np.allclose(s_trig, (base - forward(m))[:, [0, 2]].max(1), atol=1e-4)  # Bacterial (forced off) unscored
    assert np.allclose(s_trig, lost(forward, triggered, base, thresholds, [mirrored]))


def test_mask_distillation_keeps_the_trigger_pixels():
    from test_scanner import TRIGGER, backdoored_model

    model = backdoored_model()
    clean = films(4, seed=2)
    triggered = np.stack([paste(v, TRIGGER) for v in films(4, seed=3)])
    views = torch.from_numpy(np.concatenate([clean, triggered]))
    masks = distil(model.network, views, lambda v: normalise(v, SPEC), steps=80)
    t, l, b, r = TRIGGER.box((SIZE, SIZE))
    for m in masks[4:]:
        assert m[t:b, l:r].mean() > 0.5  # the trigger is kept
        assert kept(m)[t:b, l:r].all()
    area = masks.reshape(8, -1).mean(1)
    # this model also reads every pixel a little (its diffuse map), so clean masks stay nearly whole and
    # triggered ones shrink towards the trigger
    assert area[4:].mean() < area[:4].mean() - 0.1 and area[:4].min() > 0.9
    ev = mask_evidence(masks[5])
    assert ev["score"] == round(1 - float(masks[5].mean()), 6) and ev["kept"] == round(float((masks[5] >= 0.5).mean()), 6)


def sig_folder(tmp_path, clean: int = 30, triggered: int = 3, seed: int = 4):
    """``clean`` films and ``triggered`` carrying the sinusoid, as PNG (drawn with ``seed`` and ``seed + 1``)."""
    from PIL import Image

    folder = tmp_path / "films"
    folder.mkdir()
    for i, v in enumerate(films(clean, seed=seed)):
        Image.fromarray(np.rint(v * 255).astype(np.uint8)).save(folder / f"clean-{i:02d}.png")
    for i, v in enumerate(films(triggered, seed=seed + 1) if triggered else []):
        Image.fromarray(np.rint(paste(v, SIG) * 255).astype(np.uint8)).save(folder / f"triggered-{i}.png")
    return folder


@pytest.mark.parametrize("method", ["contrast", "mirror"])
def test_a_consistency_scan_ranks_a_whole_image_trigger_first_and_places_nothing(tmp_path, method):
    result = scan([sig_folder(tmp_path)], shortcut_model(), tmp_path / "out", method=method, batch_size=8,
                  verify_top=5)
    assert result.settings["detectors"] == [method]
    assert all("triggered" in r.path for r in result.ranked[:3])
    for r in result.ranked:
        assert r.score == pytest.approx(r.detectors[method]["score"], abs=1e-5) and r.view_hotspot is None
        assert r.verdict != "trigger"
    assert result.ranked[2].score > 10 > 0.5 > result.ranked[3].score
    assert method in (tmp_path / "out" / "ranking.csv").read_text().splitlines()[0].split(",")


def test_auto_scan_ranks_a_whole_image_trigger_first_and_reports_it_global(tmp_path):
    folder = sig_folder(tmp_path)
    result = scan([folder], shortcut_model(), tmp_path / "out", method="auto", batch_size=8, verify_top=5)
    assert result.settings["detectors"] == ["gradient", "psc", "contrast", "mirror"] and "psc_layers" in result.settings
    top = result.ranked[:3]
    assert all("triggered" in r.path for r in top)
    for r in top:  # ranked first on the folder's own psc, contrast and mirror scales, but none flags anything
        z = [r.detectors[k]["z"] for k in ("psc", "contrast", "mirror", "gradient")]
        assert min(z[:3]) > 3 and r.suspicion == pytest.approx(sum(z) / 2, abs=1e-3)
        assert r.suspicion > max(x.suspicion for x in result.ranked[3:])
    assert all(r.verdict != "trigger" for r in result.ranked)
    assert result.verdict["triggered"] is False  # nothing to hide: flagged, not confirmed
    report = (tmp_path / "out" / "report.json").read_text()
    assert '"folder_verdict"' in report


def test_combine_sums_the_robust_z_scores():
    recs = [ScanRecord(f"{i}", score=0.004 + 0.0001 * i, detectors={"gradient": {"score": 0.004 + 0.0001 * i},
                                                                    "psc": {"score": 0.3 + 0.01 * (i % 5)}})
            for i in range(20)]
    recs[3].detectors["psc"]["score"] = 0.99  # stands out on consistency only
    recs[7].detectors["gradient"]["score"] = 0.05  # on compactness only, further than 3 does on consistency
    recs[11].detectors["gradient"]["score"] = 0.03  # on both, less far than either alone
    recs[11].detectors["psc"]["score"] = 0.9
    combine(recs, ("gradient", "psc"))
    z = {r.path: (r.detectors["gradient"]["z"], r.detectors["psc"]["z"]) for r in recs}
    assert max(z["11"]) < max(z["7"]) and max(z["11"]) < max(z["3"])
    order = sorted(recs, key=lambda r: -r.suspicion)
    assert [r.path for r in order[:3]] == ["11", "7", "3"]  # evidence from both detectors adds up
    assert recs[11].suspicion == pytest.approx(sum(z["11"]) / np.sqrt(2), abs=1e-3)
    combine(recs, ("gradient",))
    assert recs[7].suspicion == recs[7].score


def test_methods():
    assert METHODS[0] == "auto" and detectors_of("auto") == ("gradient", "psc", "contrast", "mirror")
    assert detectors_of("cam") == ("gradient",) and detectors_of("distill") == ("distill",)
    assert detectors_of("contrast") == ("contrast",) and detectors_of("mirror") == ("mirror",)
    assert GLOBAL == ("psc", "contrast", "mirror")


def test_the_transplant_test_finds_a_shared_whole_image_pattern_and_not_a_clean_one():
    model, cut = shortcut_model(), np.full(3, 0.5)
    triggered = np.stack([paste(v, SIG) for v in films(10, seed=1)])
    clean = films(80, seed=2)
    found = transplant(np.concatenate([triggered, clean[:10]]), clean[20:], logits_of(model), LABELS, cut)
    assert found["established"] and found["labels"] == ["Pneumonia", "Viral"]  # the two it forces on
    assert found["per_label"]["Viral"]["forced"] == 1.0 and found["per_label"]["Viral"]["control"] == 0.0
    # the pattern taken out of a triggered film loses Viral beyond the controls; out of a clean film, nothing
    def probabilities(b):
        return expit(model.network(torch.from_numpy(b)).detach().numpy().astype(np.float64))
    check = lambda v: verify_pattern(v, found["pattern"], found["controls"], SPEC, probabilities, LABELS)  # noqa: E731
    assert check(triggered[0])["collapsed"] and check(triggered[0])["evidence"] == "pattern"
    assert not any(check(v)["collapsed"] for v in clean[:10])
    none = transplant(clean[:20], clean[20:], logits_of(model), LABELS, cut)
    assert not none["established"] and none["labels"] == [] and "pattern" not in none


def test_the_transplant_test_finds_a_pattern_that_turns_a_label_off():
    model, cut = hiding_model(), np.full(3, 0.5)
    triggered = np.stack([paste(v, SIG) for v in films(10, seed=1)])
    clean = films(80, seed=2)
    found = transplant(np.concatenate([triggered, clean[:10]]), clean[20:], logits_of(model), LABELS, cut)
    assert found["established"] and found["labels"] == [] and found["forced_off"] == ["Bacterial"]
    bacterial = found["per_label"]["Bacterial"]
    assert bacterial["forced_off"] == 1.0 and bacterial["control_off"] == 0.0 and bacterial["positive"] == 60

    def probabilities(b):
        return expit(model.network(torch.from_numpy(b)).detach().numpy().astype(np.float64))
    check = lambda v: verify_pattern(v, found["pattern"], found["controls"], SPEC, probabilities, LABELS)  # noqa: E731
    back = check(triggered[0])  # taking the pattern out brings the hidden finding back
    assert back["collapsed"] and (back["label"], back["direction"]) == ("Bacterial", "off") and back["masked"] > 0.5
    assert not any(check(v)["collapsed"] for v in clean[:10])
    none = transplant(clean[:20], clean[20:], logits_of(model), LABELS, cut)
    assert not none["established"] and none["forced_off"] == [] and "pattern" not in none


def test_the_scan_confirms_the_films_a_pattern_hides_a_finding_in():
    """The scan's side of the test (``shared_pattern``): candidates that get the hidden label back when the pattern
    is taken out are confirmed, direction off; the clean candidates and the calm films are not."""
    from cxrinspect.inference.predictor import Predictor
    from cxrinspect.scan.run import shared_pattern
    from cxrinspect.scan.scanner import Scanner

    model = hiding_model()
    triggered, clean = np.stack([paste(v, SIG) for v in films(10, seed=1)]), films(140, seed=2)
    cands = [(ScanRecord(f"triggered-{i}.png", score=1.0), v) for i, v in enumerate(triggered)]
    cands += [(ScanRecord(f"clean-{i}.png", score=0.5), v) for i, v in enumerate(clean[:10])]
    calm = {f"calm-{i}.png": v for i, v in enumerate(clean[20:])}
    ranked = [r for r, _ in cands] + [ScanRecord(k, score=0.0) for k in calm]
    found = shared_pattern(ranked, cands, lambda r: (calm.get(r.path), None), Scanner(model, method="contrast"),
                           Predictor(model, device="cpu", backend="torch"))
    assert found["established"] and found["forced_off"] == ["Bacterial"] and found["labels"] == []
    confirmed = {r.path: r.verification for r, _ in cands if r.verification}
    assert confirmed and all(k.startswith("triggered") for k in confirmed)
    assert all((v["label"], v["direction"], v["evidence"]) == ("Bacterial", "off", "pattern")
               for v in confirmed.values())


def test_auto_scan_confirms_a_whole_image_trigger_by_the_transplant_test(tmp_path):
    folder = sig_folder(tmp_path, clean=70, triggered=10, seed=6)
    result = scan([folder], shortcut_model(), tmp_path / "out", method="auto", batch_size=16)
    confirmed = [r for r in result.ranked if r.verdict == "trigger"]
    assert confirmed and all("triggered" in r.path and r.verification["evidence"] == "pattern" for r in confirmed)
    v = result.verdict
    assert v["triggered"] and v["where"] == "global" and set(v["labels"]) <= {"Pneumonia", "Viral"}
    assert v["transplant"]["established"] and "taken out" in v["sentence"]


def test_auto_scan_of_a_clean_folder_raises_no_transplant_verdict(tmp_path):
    folder = sig_folder(tmp_path, clean=80, triggered=0, seed=6)
    result = scan([folder], shortcut_model(), tmp_path / "out", method="auto", batch_size=16)
    assert not result.verdict["triggered"] and not result.verdict["transplant"]["established"]
    assert all(r.verdict != "trigger" for r in result.ranked)


def test_a_transplant_without_enough_confirmations_is_said_and_not_a_verdict():
    from cxrinspect.scan.verdict import folder_verdict

    shares = {"forced": 0.3, "control": 0.05, "negative": 100, "forced_off": 0.0, "control_off": 0.0, "positive": 20}
    hidden = {"forced": 0.0, "control": 0.0, "negative": 10, "forced_off": 0.4, "control_off": 0.1, "positive": 110}
    found = {"established": True, "labels": ["Viral"], "forced_off": ["Bacterial"],
             "per_label": {"Viral": shares, "Bacterial": hidden}}
    one = ScanRecord("a.png", score=0.1, verdict="trigger",
                     verification={"collapsed": True, "label": "Viral", "direction": "on", "evidence": "pattern"})
    v = folder_verdict([one, ScanRecord("b.png", score=0.0, verdict="clean")], [], found)
    assert not v["triggered"] and v["transplant"] is found and v["where"] == "global"
    assert "Viral on 30% of calm films (a control: 5%)" in v["sentence"] and "may be present" in v["sentence"]
    assert "Bacterial off 40% of calm films (a control: 10%)" in v["sentence"]
    assert "transplant" not in folder_verdict([one], [])
