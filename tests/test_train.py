"""Training: pretraining and fine-tuning on a real (tiny) store, resume after SIGKILL, titration subsets, torchrun."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from echoclr.train import FinetuneConfig, PretrainConfig, RuntimeConfig, load_checkpoint, titration_studies
from echoclr.train.finetune import finetune
from echoclr.train.pretrain import RunExistsError, pretrain

BIN = Path(sys.executable).parent
CPU = RuntimeConfig(device="cpu", loader_threads=2, checkpoint_every=1, log_every=1)


def _pretrain_config(**overrides) -> PretrainConfig:
    runtime = overrides.pop("runtime", RuntimeConfig(device="cpu", loader_threads=2, max_steps=3, log_every=1))
    return PretrainConfig(**{"batch_size": 4, "epochs": 2, **overrides}, runtime=runtime)


@pytest.mark.parametrize("method", ["simclr", "mi-simclr", "echoclr"])
def test_pretrain_methods_run_and_checkpoint(tiny_store, tmp_path, method):
    records = []
    result = pretrain(tiny_store, tmp_path / "run", _pretrain_config(method=method), on_log=records.append)
    records = [r for r in records if r.get("kind") != "monitor"]  # training records only
    assert result.global_step == 3
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["progress"]["global_step"] == 3
    assert json.loads((tmp_path / "run" / "config.json").read_text())["method"] == method
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    has_order = any(k.startswith("order_head.") for k in state["model"])
    assert has_order == (method == "echoclr")
    assert (records[0]["order"] is not None) == (method == "echoclr")


def test_existing_run_needs_resume_or_overwrite(tiny_store, tmp_path):
    config = _pretrain_config()
    pretrain(tiny_store, tmp_path / "run", config)
    with pytest.raises(RunExistsError, match="--resume"):
        pretrain(tiny_store, tmp_path / "run", config)
    with pytest.raises(ValueError, match="different config"):
        pretrain(tiny_store, tmp_path / "run", _pretrain_config(lr=0.01), resume=True)
    assert pretrain(tiny_store, tmp_path / "run", config, overwrite=True).global_step == 3


def test_resume_accepts_runtime_changes_and_a_longer_run(tiny_store, tmp_path):
    pretrain(tiny_store, tmp_path / "run", _pretrain_config(epochs=5))
    longer = _pretrain_config(epochs=5, runtime=RuntimeConfig(device="cpu", loader_threads=1, max_steps=5,
                                                              log_every=3, checkpoint_every=2, device_cache="off"))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["runtime"]["device_cache"] == "auto"
    assert pretrain(tiny_store, tmp_path / "run", longer, resume=True).global_step == 5
    assert json.loads((tmp_path / "run" / "config.json").read_text())["runtime"]["device_cache"] == "off"
    from echoclr.errors import UsageError

    with pytest.raises(UsageError, match="size"):  # the clip size is science, not runtime
        pretrain(tiny_store, tmp_path / "run", _pretrain_config(epochs=5, runtime=RuntimeConfig(
            device="cpu", loader_threads=1, max_steps=6, size=16)), resume=True)


def test_every_pair_of_an_epoch_is_used(tiny_store, tmp_path):
    """One epoch runs ceil(pairs / batch) steps: the last, partial batch is trained on, not dropped."""
    import math

    import numpy as np

    from echoclr.data import SamplerConfig, rank_item_counts
    from echoclr.store import ClipReader, open_store

    reader = ClipReader(open_store(tiny_store), threads=1)
    videos = np.array(reader.store.select(["train"]), dtype=np.int64)
    sampler = SamplerConfig(mode="pairs", clip_len=4, seed=0, reorder=True)
    n_pairs = int(rank_item_counts(sampler, reader.study_of_video[videos], reader.n_frames[videos], epoch=0,
                                   world_size=1)[0])
    reader.close()
    batch = 4 if n_pairs % 4 else 3  # a batch size that leaves a partial last batch
    assert n_pairs % batch, n_pairs
    config = _pretrain_config(batch_size=batch, epochs=1, runtime=RuntimeConfig(device="cpu", loader_threads=1,
                                                                                log_every=1))
    records = []
    result = pretrain(tiny_store, tmp_path / "run", config, on_log=records.append)
    train_records = [r for r in records if r.get("kind") != "monitor"]  # on_log also gets the monitor's records
    assert result.global_step == math.ceil(n_pairs / batch) == train_records[-1]["steps"]
    assert result.epochs_done == 1


def test_batch_larger_than_the_data_is_refused(tiny_store, tmp_path):
    with pytest.raises(ValueError, match="larger than an epoch"):
        pretrain(tiny_store, tmp_path / "run", _pretrain_config(batch_size=10_000))


def _cli_pretrain(store, out, *extra):
    return [str(BIN / "echoclr"), "pretrain", str(store), "--out", str(out), "--device", "cpu", "--batch-size", "4",
            "--epochs", "3", "--max-steps", "5", "--checkpoint-every", "1", "--threads", "2", "--seed", "5",
            "--no-tensorboard", *extra]


def test_sigkill_and_resume_reproduces_uninterrupted_weights(tiny_store, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the uninterrupted run checkpoints only at its end (the last --checkpoint-every wins): same weights, fewer writes
    clean = subprocess.run(_cli_pretrain(tiny_store, tmp_path / "clean", "--checkpoint-every", "100"),
                           capture_output=True, text=True, env=env)
    assert clean.returncode == 0, clean.stderr

    killed = tmp_path / "killed"
    process = subprocess.Popen(_cli_pretrain(tiny_store, killed), env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    step = 0
    while time.time() < deadline and process.poll() is None:
        if (killed / "checkpoint.pt").exists():
            try:
                step = load_checkpoint(killed / "checkpoint.pt")["progress"]["global_step"]
            except Exception:  # caught mid-rename is impossible (atomic), but a read can race the first write
                step = 0
            if step >= 2:
                break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert 2 <= step < 5, f"the kill must land mid-run (checkpoint at step {step})"

    resumed = subprocess.run(_cli_pretrain(tiny_store, killed, "--resume"), capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    a = load_checkpoint(tmp_path / "clean" / "checkpoint.pt")
    b = load_checkpoint(killed / "checkpoint.pt")
    assert a["progress"] == b["progress"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_titration_subsets_are_nested_and_by_study():
    studies = [f"s{i}" for i in range(200)]
    previous: set[str] = set()
    for ratio, expected in ((0.01, 2), (0.05, 10), (0.1, 20), (0.25, 50), (0.5, 100), (1.0, 200)):
        chosen = titration_studies(studies + studies[:10], ratio, seed=3)
        assert len(chosen) == expected
        assert previous <= set(chosen)
        previous = set(chosen)
    assert previous == set(studies)
    assert titration_studies(studies, 0.1, seed=4) != titration_studies(studies, 0.1, seed=3)
    with pytest.raises(ValueError, match="ratio"):
        titration_studies(studies, 0.0, seed=0)


def test_stratified_titration_subsets_hold_both_classes_and_stay_nested():
    studies = [f"s{i:03d}" for i in range(96)]
    labels = {s: int(i % 6 == 0) for i, s in enumerate(studies)}  # 16 positives of 96, as rare as the demo's
    unstratified_one_class = 0
    for seed in range(40):
        previous: set[str] = set()
        for ratio in (0.01, 0.05, 0.1, 0.25, 0.5, 1.0):
            chosen = titration_studies(studies, ratio, seed, labels=labels)
            positives = sum(labels[s] for s in chosen)
            assert 1 <= positives < len(chosen) or len(chosen) == len(studies)
            assert len(chosen) == len(titration_studies(studies, ratio, seed))  # the same count either way
            if ratio >= 0.1:  # the share follows the prevalence (1/6) up to rounding
                assert abs(positives - len(chosen) / 6) <= 1
            assert previous <= set(chosen)
            previous = set(chosen)
        unstratified = titration_studies(studies, 0.05, seed)
        unstratified_one_class += len({labels[s] for s in unstratified}) == 1
    assert unstratified_one_class > 0  # what stratifying prevents: 5 studies drawn blindly are often one class
    with pytest.raises(ValueError, match="no label"):
        titration_studies(studies, 0.1, 0, labels={studies[0]: 1})


def test_prediction_files_keep_the_ranking_of_saturated_scores(tmp_path):
    """Scores of a confident model differ only far below 1e-6 (a demo run's test scores all lay in [0, 1.4e-9]);
    the files must read back to the same floats, so the AUROC from the file is the model's, not a tie at 0.5."""
    from types import SimpleNamespace

    import numpy as np

    from echoclr.eval import auroc, read_predictions
    from echoclr.train.finetune import write_predictions

    reader = SimpleNamespace(study_ids=np.array(["S0", "S1", "S2", "S3"]), video_ids=np.array(["a", "b", "c", "d"]),
                             study_of_video=np.array([0, 1, 2, 3]))  # the three arrays write_predictions reads
    videos, labels = np.arange(4), np.array([0.0, 1.0, 0.0, 1.0])
    scores = np.array([3e-10, 1.37e-9, 2e-12, 1 - 1e-12])
    study_csv = write_predictions(tmp_path, "test", reader, videos, labels, scores)
    written = read_predictions(study_csv)
    assert list(written.scores) == list(scores)  # exact float64 round trip
    assert auroc(written.labels, written.scores) == auroc(labels, scores) == 1.0


def test_finetune_writes_predictions_and_restores_best(tiny_store, tmp_path):
    config = FinetuneConfig(label="lvh", ratio=1.0, lr=1e-3, clip_len=8, batch_size=8, max_epochs=2, patience=1,
                            eval_clips=2, runtime=CPU)
    result = finetune(tiny_store, tmp_path / "ft", config)
    history = json.loads((tmp_path / "ft" / f"lr_{1e-3:g}" / "history.json").read_text())
    assert history["done"] and len(history["epochs"]) in (1, 2)
    assert result.best_epoch == history["best_epoch"]
    with (tmp_path / "ft" / "predictions_test_videos.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and set(rows[0]) == {"study_id", "video_id", "label", "score"}
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    with (tmp_path / "ft" / "predictions_test.csv").open() as handle:
        studies = list(csv.DictReader(handle))
    assert len(studies) == len({r["study_id"] for r in rows})
    summary = json.loads((tmp_path / "ft" / "summary.json").read_text())
    assert summary["n_train_studies"] >= 2 and summary["lr"] == pytest.approx(1e-3)
    # a rerun resumes: the finished trial is not trained again
    again = finetune(tiny_store, tmp_path / "ft", config)
    assert again.lr == result.lr and again.val_loss == result.val_loss
    # Grad-CAM overlays of the fine-tuned model, through the CLI
    from typer.testing import CliRunner

    from echoclr.cli.app import app

    done = CliRunner().invoke(app, ["gradcam", str(tmp_path / "ft"), str(tiny_store), "--out", str(tmp_path / "cam"),
                                    "--n", "2"])
    assert done.exit_code == 0, done.output
    pngs = sorted((tmp_path / "cam").glob("gradcam_*.png"))
    assert len(pngs) == 2 and all(p.stat().st_size > 1000 for p in pngs)
    # the same overlays again: refused without --overwrite (the files are untouched), replaced with it
    before = {p: p.stat().st_mtime_ns for p in pngs}
    again_cam = CliRunner().invoke(app, ["gradcam", str(tmp_path / "ft"), str(tiny_store), "--out",
                                         str(tmp_path / "cam"), "--n", "2"])
    assert again_cam.exit_code == 2 and "--overwrite" in again_cam.output
    assert {p: p.stat().st_mtime_ns for p in pngs} == before
    replaced = CliRunner().invoke(app, ["gradcam", str(tmp_path / "ft"), str(tiny_store), "--out",
                                        str(tmp_path / "cam"), "--n", "2", "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert all(p.stat().st_mtime_ns > before[p] for p in pngs)


@pytest.mark.parametrize("n_videos", [8, 9, 10, 11])
@pytest.mark.parametrize("min_share", [1, 2])
def test_rank_shares_are_halves_of_the_single_process_batches(n_videos, min_share):
    """Fine-tuning under 2 ranks: rank 0 takes the first half of every single-process global batch and rank 1 the
    second, in plan order (augmentation parameters included), and each rank's loader batches of
    ``batch_size // 2`` line up with those halves. Only a last partial batch too small to give every rank
    ``min_share`` clips is trained on by one process and not by two."""
    import numpy as np

    from echoclr.data import SamplerConfig, plan_epoch
    from echoclr.train.finetune import rank_share

    plan = plan_epoch(SamplerConfig(mode="single", clip_len=4, seed=3, reorder=False),
                      np.arange(n_videos) // 2, np.full(n_videos, 30), epoch=1)
    batch = 4
    one, one_sizes = rank_share(plan, batch, 0, 1, min_share=min_share)
    shares = [rank_share(plan, batch, r, 2, min_share=min_share) for r in (0, 1)]
    assert shares[0][1] == shares[1][1]  # both ranks run the same global batches (same step count)
    last = n_videos % batch
    dropped_by_two = 0 < last < 2 * min_share
    assert one_sizes[: len(shares[0][1])] == shares[0][1]
    assert len(one_sizes) - len(shares[0][1]) == int(dropped_by_two and last >= min_share)
    for name, column in one.fields.items():
        local = [shares[r][0].fields[name] for r in (0, 1)]
        taken = [0, 0]  # items of each rank's plan consumed so far
        for size in shares[0][1]:
            halves = [len(h) for h in np.array_split(np.arange(size), 2)]
            assert max(halves) <= batch // 2  # each half is one loader batch of its rank
            got = [local[r][taken[r] : taken[r] + halves[r]] for r in (0, 1)]
            first = sum(taken)
            np.testing.assert_array_equal(np.concatenate(got), column[first : first + size], err_msg=name)
            taken = [taken[r] + halves[r] for r in (0, 1)]
        assert taken == [len(local[0]), len(local[1])]


def test_a_finetune_config_saved_before_batchnorm_existed_still_matches():
    """A run folder written before ``--batchnorm`` existed trained with batch statistics: its rerun is accepted
    with the default, and ``frozen`` is a science change."""
    from echoclr.train.config import science_json

    now = FinetuneConfig(label="lvh").to_json()
    older = {k: v for k, v in now.items() if k != "batchnorm"}
    assert science_json(older) == science_json(now)
    assert science_json(FinetuneConfig(label="lvh", batchnorm="frozen").to_json()) != science_json(older)
    with pytest.raises(ValueError, match="batchnorm must be one of train, frozen"):
        FinetuneConfig(label="lvh", batchnorm="sync")


def test_learning_rate_rule_follows_the_paper():
    assert FinetuneConfig(label="x", ratio=0.5).learning_rates() == (1e-4,)
    assert FinetuneConfig(label="x", ratio=0.05).learning_rates() == (1e-4, 5e-5, 1e-5)
    assert FinetuneConfig(label="x", ratio=0.5, init="runs/a").learning_rates() == (0.1,)
    assert FinetuneConfig(label="x", ratio=0.1, init="runs/a").learning_rates() == (0.1, 0.05, 0.001)


def test_finetune_from_ssl_run_and_strict_loading(tiny_store, tmp_path):
    pretrain(tiny_store, tmp_path / "ssl", _pretrain_config())
    config = FinetuneConfig(label="severe_as", init=str(tmp_path / "ssl"), ratio=1.0, lr=1e-3, clip_len=4,
                            batch_size=8, max_epochs=1, eval_clips=1, runtime=CPU)
    assert finetune(tiny_store, tmp_path / "ft", config).best_epoch == 0
    bad = tmp_path / "bad.pt"
    torch.save({"model": {"encoder.stem.0.weight": torch.zeros(1), "surprise": torch.zeros(1)}}, bad)
    from echoclr.models import StateDictMismatchError

    with pytest.raises(StateDictMismatchError, match="surprise"):
        finetune(tiny_store, tmp_path / "ft2", FinetuneConfig(label="lvh", init=str(bad), runtime=CPU))
    with pytest.raises(FileNotFoundError, match="KINETICS|download"):
        finetune(tiny_store, tmp_path / "ft3", FinetuneConfig(label="lvh", init="kinetics:/nope.pth", runtime=CPU))


@pytest.mark.slow
def test_torchrun_two_process_pretraining_on_cpu(tiny_store, tmp_path):
    command = [str(BIN / "torchrun"), "--nproc-per-node", "2", "--master-port", "29517", "-m", "echoclr.cli.app",
               "pretrain", str(tiny_store), "--out", str(tmp_path / "ddp"), "--device", "cpu", "--batch-size", "4",
               "--epochs", "1", "--max-steps", "2", "--threads", "1", "--log-every", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    state = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert state["progress"]["global_step"] == 2
    records = map(json.loads, (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines())
    lines = [r for r in records if "loss" in r]  # training records (monitor records have kind "monitor")
    assert lines and all(torch.isfinite(torch.tensor(r["loss"])) for r in lines)
    assert state["progress"]["world_size"] == 2 and state["progress"]["step"] == 2
    # one process cannot continue a two-process epoch mid-way: refused with the command that can
    from echoclr.errors import UsageError

    config = PretrainConfig(batch_size=4, epochs=1, runtime=RuntimeConfig(device="cpu", loader_threads=1,
                                                                          max_steps=3))
    with pytest.raises(UsageError, match="nproc-per-node 2"):
        pretrain(tiny_store, tmp_path / "ddp", config, resume=True)


def _torchrun(port: int, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    command = [str(BIN / "torchrun"), "--nproc-per-node", "2", "--master-port", str(port), "-m", "echoclr.cli.app",
               *args]
    return _run_job(command, timeout)


def _run_job(command: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run torchrun in its own process group; on timeout kill the group (the workers too, not only torchrun)."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _read_csv(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
@pytest.mark.parametrize("init", ["ssl"])  # "random" takes the same DDP path (34 s more; with frozen batch norm its
def test_torchrun_finetune_is_one_data_parallel_model(tiny_store, tmp_path, init):  # outputs are near-constant)
    """Two gloo ranks compute the single-process fine-tuning run: every epoch's train and val loss, the chosen
    epoch and the test predictions agree within float tolerance. Needs ``--batchnorm frozen`` on the CPU (torch
    has no CPU SyncBatchNorm; with batch statistics each rank would normalise its own half of the batch). The
    batch of 4 over 2 ranks also covers the last partial batch of the epoch, split between the ranks. Run from an
    SSL initialisation, whose weights every rank must load identically."""
    import numpy as np

    init_arg = "random"
    if init == "ssl":
        pretrain(tiny_store, tmp_path / "ssl", _pretrain_config(runtime=RuntimeConfig(device="cpu", loader_threads=1,
                                                                                      max_steps=1)))
        init_arg = str(tmp_path / "ssl")
    science = {"label": "lvh", "init": init_arg, "lr": 1e-3, "clip_len": 4, "batch_size": 4, "max_epochs": 2,
               "patience": 1, "batchnorm": "frozen"}
    one = finetune(tiny_store, tmp_path / "one", FinetuneConfig(
        **science, runtime=RuntimeConfig(device="cpu", loader_threads=1, size=16, tensorboard=False)))
    out = tmp_path / "ddp"
    done = _torchrun(29521 if init == "random" else 29522, "finetune", str(tiny_store), "--label", "lvh", "--out",
                     str(out), "--init", init_arg, "--lr", "1e-3", "--clip-len", "4", "--batch-size", "4",
                     "--max-epochs", "2", "--patience", "1", "--batchnorm", "frozen", "--threads", "1",
                     "--device", "cpu", "--size", "16", "--no-tensorboard")
    assert done.returncode == 0, done.stderr[-3000:]
    run = out / "ratio_1"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert (summary["lr"], summary["best_epoch"]) == (one.lr, one.best_epoch)
    assert summary["val_loss"] == pytest.approx(one.val_loss, rel=1e-5)
    histories = [json.loads((d / "lr_0.001" / "history.json").read_text())["epochs"] for d in (tmp_path / "one", run)]
    assert len(histories[0]) == len(histories[1]) == 2
    for a, b in zip(*histories):
        assert (a["train_loss"], a["val_loss"]) == pytest.approx((b["train_loss"], b["val_loss"]), rel=1e-5)
    assert histories[0][0]["val_loss"] != pytest.approx(histories[0][1]["val_loss"], rel=1e-4)  # it did train
    written = [_read_csv(d / "predictions_test_videos.csv") for d in (tmp_path / "one", run)]
    assert [r["video_id"] for r in written[0]] == [r["video_id"] for r in written[1]]
    np.testing.assert_allclose([float(r["score"]) for r in written[1]], [float(r["score"]) for r in written[0]],
                               atol=2e-6)


def _rank_pid(torchrun_pid: int, rank: int) -> int | None:
    """The pid of torchrun's worker process of ``rank`` (its environment holds RANK=rank), None before it starts."""
    children = set()
    for task in Path(f"/proc/{torchrun_pid}/task").iterdir():
        children.update(int(p) for p in (task / "children").read_text().split())
    for pid in children:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if f"RANK={rank}".encode() in environ:
            return pid
    return None


@pytest.mark.slow
def test_torchrun_rank_killed_mid_pretraining_ends_the_job_and_resume_continues(tiny_store, tmp_path):
    """SIGKILL of rank 1 after a checkpoint: torchrun ends the job (rank 0 is not left waiting in a collective)
    and exits non-zero; ``--resume`` under torchrun then finishes with the weights of an uninterrupted run."""
    def command(out: Path, port: int, *extra: str) -> list[str]:
        return [str(BIN / "torchrun"), "--nproc-per-node", "2", "--master-port", str(port), "-m", "echoclr.cli.app",
                "pretrain", str(tiny_store), "--out", str(out), "--device", "cpu", "--batch-size", "4", "--epochs",
                "3", "--max-steps", "5", "--checkpoint-every", "1", "--threads", "1", "--seed", "5",
                "--no-tensorboard", *extra]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    clean = _run_job(command(tmp_path / "clean", 29524, "--checkpoint-every", "100"), timeout=600)
    assert clean.returncode == 0, clean.stderr[-3000:]

    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed, 29525), env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        step = 0
        while time.time() < deadline and process.poll() is None and step < 2:
            if (killed / "checkpoint.pt").exists():
                try:
                    step = load_checkpoint(killed / "checkpoint.pt")["progress"]["global_step"]
                except Exception:  # a read can race the first write
                    step = 0
            time.sleep(0.05)
        assert process.poll() is None and 2 <= step < 5, f"the kill must land mid-run (checkpoint at step {step})"
        rank1 = _rank_pid(process.pid, 1)
        assert rank1 is not None, "rank 1's process was not found among torchrun's children"
        os.kill(rank1, signal.SIGKILL)
        killed_at = time.monotonic()
        returncode = process.wait(timeout=240)  # a hang (rank 0 waiting for rank 1 forever) runs into this
        assert returncode != 0
        assert time.monotonic() - killed_at < 200
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    resumed = _run_job(command(killed, 29526, "--resume"), timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load_checkpoint(tmp_path / "clean" / "checkpoint.pt")
    b = load_checkpoint(killed / "checkpoint.pt")
    assert a["progress"] == b["progress"] and b["progress"]["global_step"] == 5
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


@pytest.mark.slow
def test_torchrun_rank0_setup_error_ends_every_rank(tiny_store, tmp_path):
    """Rank 0 refuses the run folder (another command's run); rank 1 must not wait for it in a collective."""
    out = tmp_path / "taken"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"kind": "finetune", "label": "lvh"}))
    started = time.monotonic()
    done = _torchrun(29523, "pretrain", str(tiny_store), "--out", str(out), "--device", "cpu", "--batch-size", "4",
                     "--max-steps", "1", "--threads", "1", timeout=300)
    elapsed = time.monotonic() - started
    assert done.returncode != 0
    assert "not a pretraining run" in done.stderr  # rank 0's own message
    assert "rank 0 of 2 failed" in done.stderr  # rank 1 learnt it and stopped instead of hanging
    assert elapsed < 240, f"{elapsed:.0f} s"  # start-up included; a hang would run into the 300 s timeout


def test_loss_alarm_holds_only_while_nt_xent_sits_at_log_2n_minus_1():
    """The one collapse detector (the monitor's): a moving loss never alarms, a stuck one after the window."""
    import math

    from echoclr.train.monitor import LossAtCollapse, collapse_advice

    floor = math.log(2 * 8 - 1)
    moving = LossAtCollapse(tolerance=1e-3, window=3)
    assert not any(moving.observe(floor - 0.01 * i, floor) for i in range(40))
    stuck = LossAtCollapse(tolerance=1e-3, window=3)
    assert [stuck.observe(floor + 1e-5, floor) for _ in range(5)] == [False, False, True, True, True]
    assert not stuck.observe(floor - 0.1, floor)  # the loss moved: the window starts again
    assert "--lr (now 0.01; 0.0001 is the default that trains" in collapse_advice(1e-2)


def test_default_pretraining_lr_trains_and_help_shows_the_papers():
    from typer.testing import CliRunner

    from echoclr.cli.app import app
    from echoclr.train.config import DEFAULT_PRETRAIN_LR, PAPER_PRETRAIN_LR

    assert PretrainConfig().lr == DEFAULT_PRETRAIN_LR != PAPER_PRETRAIN_LR == 0.1
    shown = CliRunner().invoke(app, ["pretrain", "--help"], env={"COLUMNS": "200"})
    assert "The paper's is 0.1" in shown.output and "0.0001" in shown.output
    assert "--device-cache" in shown.output and "'auto' is 'off'" in " ".join(shown.output.split())


def test_device_cache_is_a_runtime_option():
    from typer.testing import CliRunner

    from echoclr.cli.app import app
    from echoclr.train.config import science_json

    on, off = (PretrainConfig(runtime=RuntimeConfig(device_cache=mode)) for mode in ("auto", "off"))
    assert on.to_json()["runtime"]["device_cache"] == "auto"
    assert science_json(on.to_json()) == science_json(off.to_json())
    with pytest.raises(ValueError, match="device_cache must be one of"):
        RuntimeConfig(device_cache="on")
    bad = CliRunner().invoke(app, ["pretrain", "store", "--out", "x", "--device-cache", "on"])
    assert bad.exit_code == 2 and "--device-cache" in bad.output


def test_a_run_builds_each_loader_and_pipeline_once(labelled_store, tmp_path):
    """Pretraining over 2 epochs with 2 monitor probes (2 inference passes each), and fine-tuning over 2 epochs with
    2 validation passes and the test predictions: one loader and one DALI pipeline of each kind per run (counted by
    the loader module)."""
    from echoclr.pipeline import loaders

    def built_during(run) -> dict[tuple[str, str], int]:
        before = loaders.builds.copy()
        run()
        return {key: n for key, n in (loaders.builds - before).items()}

    pretrain_config = PretrainConfig(batch_size=4, epochs=2, runtime=RuntimeConfig(
        device="cpu", loader_threads=1, log_every=100, eval_every=3, checkpoint_every=100, size=16,
        tensorboard=False))
    records = []
    built = built_during(lambda: pretrain(labelled_store, tmp_path / "pre", pretrain_config, on_log=records.append))
    steps = [r for r in records if r.get("kind") != "monitor"]
    probes = [r for r in records if r.get("kind") == "monitor"]
    assert {r["epoch"] for r in steps} == {0, 1} and len(probes) >= 2 and probes[0]["knn_auroc"]
    assert built == {("PairLoader", "loader"): 1, ("PairLoader", "pipeline"): 1,
                     ("EvalLoader", "loader"): 1, ("EvalLoader", "pipeline"): 1}

    finetune_config = FinetuneConfig(label="lvh", lr=1e-4, clip_len=8, batch_size=4, max_epochs=2, patience=5,
                                     eval_clips=1, runtime=RuntimeConfig(device="cpu", loader_threads=1,
                                                                         tensorboard=False))
    ft_records = []
    built = built_during(lambda: finetune(labelled_store, tmp_path / "ft", finetune_config, on_log=ft_records.append))
    assert [r["epoch"] for r in ft_records] == [0, 1]  # 2 training epochs, 2 validation passes
    assert (tmp_path / "ft" / "predictions_test.csv").exists()  # and one more pass for the test predictions
    assert built == {("SingleLoader", "loader"): 1, ("SingleLoader", "pipeline"): 1,
                     ("EvalLoader", "loader"): 1, ("EvalLoader", "pipeline"): 1}
