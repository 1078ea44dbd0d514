"""--overwrite deletes only what the command recognises as its own; writers refuse to replace outputs without it.

Each test first reproduced the data loss it guards against (the unrelated file was deleted before the fix)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from echoclr.run.demo import DEMO_MARKER, DemoConfig, run_demo
from echoclr.overwrite import OverwriteRefusedError, check_deletable, remove_owned_folder
from echoclr.train import FinetuneConfig, PretrainConfig, RuntimeConfig
from echoclr.train.finetune import finetune
from echoclr.train.pretrain import pretrain

CPU = RuntimeConfig(device="cpu", loader_threads=1, max_steps=1)


def _foreign_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "thesis.txt").write_text("years of work")
    return path


def _intact(path: Path) -> bool:
    return (path / "thesis.txt").read_text() == "years of work"


def test_demo_overwrite_refuses_a_folder_without_the_demo_marker(tmp_path):
    out = _foreign_folder(tmp_path / "mine")
    with pytest.raises(OverwriteRefusedError, match=DEMO_MARKER):
        run_demo(DemoConfig(out=out, device="cpu"), overwrite=True, log=lambda _: None)
    assert _intact(out)


def test_demo_overwrite_never_deletes_the_folder_holding_the_working_directory(tmp_path, monkeypatch):
    out = tmp_path / "demo"
    out.mkdir()
    (out / DEMO_MARKER).write_text("{}")
    (out / "work").mkdir()
    monkeypatch.chdir(out / "work")
    with pytest.raises(OverwriteRefusedError, match="current folder"):
        run_demo(DemoConfig(out=Path(".."), device="cpu"), overwrite=True, log=lambda _: None)
    assert (out / DEMO_MARKER).exists()


def test_finetune_overwrite_refuses_a_folder_that_is_not_a_finetuning_run(tiny_store, tmp_path):
    out = _foreign_folder(tmp_path / "ft")
    with pytest.raises(OverwriteRefusedError, match="config.json"):
        finetune(tiny_store, out, FinetuneConfig(label="lvh", runtime=CPU), overwrite=True)
    assert _intact(out)
    # a pretraining run's folder is not a fine-tuning run either
    (out / "thesis.txt").unlink()
    (out / "config.json").write_text(json.dumps({"kind": "pretrain"}))
    with pytest.raises(OverwriteRefusedError, match="fine-tuning"):
        finetune(tiny_store, out, FinetuneConfig(label="lvh", runtime=CPU), overwrite=True)
    assert (out / "config.json").exists()


def test_finetune_into_a_foreign_folder_is_refused_without_overwrite(tiny_store, tmp_path):
    out = _foreign_folder(tmp_path / "ft")
    with pytest.raises(FileExistsError, match="not a fine-tuning run"):
        finetune(tiny_store, out, FinetuneConfig(label="lvh", runtime=CPU))
    assert _intact(out) and not (out / "config.json").exists()


def test_pretrain_overwrite_refuses_another_commands_run(tiny_store, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"kind": "finetune", "label": "lvh"}))
    with pytest.raises(OverwriteRefusedError, match="pretraining"):
        pretrain(tiny_store, out, PretrainConfig(batch_size=4, runtime=CPU), overwrite=True)
    assert json.loads((out / "config.json").read_text())["kind"] == "finetune"


def test_experiment_refuses_a_foreign_output_folder(tiny_store, tmp_path):
    from echoclr.run.experiment import ExperimentConfig, run_experiment

    out = _foreign_folder(tmp_path / "exp")
    config = ExperimentConfig.cpu_preset("lvh", methods=(), inits=("random",), ratios=(1.0,))
    with pytest.raises(FileExistsError, match="experiment.json"):
        run_experiment(tiny_store, out, config)
    assert _intact(out) and not (out / "experiment.json").exists()


@pytest.mark.parametrize("protected", ["/", "~", ".", ".."])
def test_protected_folders_are_never_deleted(protected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OverwriteRefusedError, match="refusing"):
        check_deletable(Path(protected).expanduser())


def test_remove_owned_folder_deletes_only_an_owned_folder(tmp_path):
    out = _foreign_folder(tmp_path / "x")
    with pytest.raises(OverwriteRefusedError, match="marker.json"):
        remove_owned_folder(out, owned=False, what="a demo folder", sign="marker.json")
    assert _intact(out)
    assert remove_owned_folder(out, owned=True, what="a demo folder", sign="marker.json")
    assert not out.exists()
