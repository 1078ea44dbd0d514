"""Weights out: a real pretraining run exported and loaded, strict, into stock torchvision r3d_18 (fc = Identity)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import torchvision
from safetensors.torch import load_file
from typer.testing import CliRunner

from echoclr.cli.app import app
from echoclr.models import Encoder, StateDictMismatchError, load_encoder
from echoclr.train import PretrainConfig, RuntimeConfig, load_checkpoint
from echoclr.train.pretrain import pretrain


def stock_r3d18() -> torch.nn.Module:
    net = torchvision.models.video.r3d_18()
    net.fc = torch.nn.Identity()
    return net.eval()


@pytest.fixture(scope="module")
def run(tiny_store, tmp_path_factory):
    """A one-step EchoCLR pretraining run on the tiny store (real checkpoint, config and progress)."""
    out = tmp_path_factory.mktemp("export") / "run"
    config = PretrainConfig(batch_size=4, epochs=1, runtime=RuntimeConfig(device="cpu", loader_threads=2, max_steps=1))
    pretrain(tiny_store, out, config)
    return out


def test_export_loads_strictly_into_torchvision_and_gives_echoclr_features(run, tiny_store, tmp_path):
    out = tmp_path / "weights"
    done = CliRunner().invoke(app, ["export", str(run), "--out", str(out), "--store", str(tiny_store)])
    assert done.exit_code == 0, done.output

    trained = {k.removeprefix("encoder."): v for k, v in load_checkpoint(run / "checkpoint.pt")["model"].items()
               if k.startswith("encoder.")}
    weights = load_file(str(out / "encoder.safetensors"))
    assert set(weights) == set(trained)
    assert all(torch.equal(weights[k], trained[k]) for k in trained)  # the run's weights, not a fresh init
    pth = torch.load(out / "encoder.pth", weights_only=True)
    assert set(pth) == set(weights) and all(torch.equal(pth[k], weights[k]) for k in weights)

    net = stock_r3d18()
    net.load_state_dict(weights, strict=True)
    ours = load_encoder(out / "encoder.safetensors")
    clip = torch.rand(2, 1, 4, 32, 32, generator=torch.Generator().manual_seed(0))  # (N, 1, T, H, W) gray
    with torch.no_grad():
        expected = ours(clip)
        got = net(clip.repeat(1, 3, 1, 1, 1))  # gray replicated to RGB: (N, 3, T, H, W)
    assert got.shape == (2, 512)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert expected.std() > 0  # features carry signal (a zero encoder would also agree with itself)
    # The run folder itself loads to the same weights.
    from_run = load_encoder(run).state_dict()
    assert all(torch.equal(from_run[k], weights[k]) for k in weights)

    card = json.loads((out / "model_card.json").read_text())
    assert card["method"] == "echoclr"
    assert card["training"]["global_step"] == 1
    assert card["preprocessing"]["clip_len"] == 4 and card["preprocessing"]["input_size"] == 32
    assert card["store"]["preprocess"]["size"] == 32 and card["store"]["n_videos"] > 0
    for name in ("encoder.safetensors", "encoder.pth"):
        assert card["files"][name]["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()


def test_export_refuses_to_replace_and_overwrites_only_its_files(run, tmp_path):
    out = tmp_path / "weights"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    runner = CliRunner()
    assert runner.invoke(app, ["export", str(run), "--out", str(out)]).exit_code == 0
    again = runner.invoke(app, ["export", str(run), "--out", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output and "Traceback" not in again.output
    assert runner.invoke(app, ["export", str(run), "--out", str(out), "--overwrite"]).exit_code == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["encoder.pth", "encoder.safetensors", "model_card.json",
                                                     "notes.txt"]


def test_export_of_a_missing_run_is_one_error(tmp_path):
    done = CliRunner().invoke(app, ["export", str(tmp_path / "nope"), "--out", str(tmp_path / "w")])
    assert done.exit_code == 2
    assert [line for line in done.output.splitlines() if line.startswith("error:")]
    assert "nope" in "".join(done.output.split()) and "Traceback" not in done.output


def test_load_encoder_names_mismatched_keys(tmp_path):
    weights = Encoder().state_dict()
    weights.pop("layer4.1.conv2.1.weight")
    torch.save(weights, tmp_path / "broken.pth")
    with pytest.raises(StateDictMismatchError, match=r"missing keys \(1\): layer4.1.conv2.1.weight"):
        load_encoder(tmp_path / "broken.pth")


def test_finetune_checkpoint_exports_its_encoder_and_says_how_it_was_normalised(tmp_path):
    from echoclr.models import Classifier
    from echoclr.train import FinetuneConfig
    from echoclr.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = Classifier(Encoder())
    config = FinetuneConfig(label="lvh", init="kinetics:r3d_18.pth", ratio=0.1)
    save_checkpoint(tmp_path / "ft" / "checkpoint.pt", {"model": model.state_dict(),
                                                        "config": json.dumps(config.to_json())})
    done = CliRunner().invoke(app, ["export", str(tmp_path / "ft"), "--out", str(tmp_path / "w")])
    assert done.exit_code == 0, done.output
    weights = load_file(str(tmp_path / "w" / "encoder.safetensors"))
    stock_r3d18().load_state_dict(weights, strict=True)
    assert all(torch.equal(weights[k], v) for k, v in model.encoder.state_dict().items())
    card = json.loads((tmp_path / "w" / "model_card.json").read_text())
    assert card["method"] == "finetune (lvh, init kinetics:r3d_18.pth)"
    assert "0.43216" in card["preprocessing"]["normalisation"]  # Kinetics standardisation is part of its input
    assert card["store"].startswith("not given")
