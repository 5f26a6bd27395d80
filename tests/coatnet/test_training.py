"""Training: it learns, it resumes exactly, it trains in several processes, and its files are complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from coatnet import Preprocessing, load_checkpoint, read_checkpoint_info
from coatnet.cli.commands import main
from coatnet.training.loop import TrainSettings, _augmentation, _lr_schedule, train
from coatnet.training.state import load_resume, save_resume
from tests.support import processes
from tests.support.data import make_fashion_like

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    return "fashion-mnist:" + str(make_fashion_like(tmp_path_factory.mktemp("fmnist"), n_train=96, n_test=40))


def toy(data: str, **changes) -> TrainSettings:
    values = dict(model="coatnet_toy", data=data, img_size=32, epochs=3, batch_size=16, lr=3e-3,
                  warmup_epochs=0.5, drop_path=0.0)  # fmt: skip
    return TrainSettings(**{**values, **changes})


def test_a_toy_model_overfits_a_small_batch(tmp_path, data):
    settings = toy(data, epochs=40, batch_size=32, train_subset=32, test_subset=32, lr=1e-2,
                   label_smoothing=0.0, weight_decay=0.0, warmup_epochs=1)  # fmt: skip
    losses = []
    result = train(settings, tmp_path, progress=False, on_step=lambda step, loss: losses.append(loss))
    assert losses[-1] < 0.1 * losses[0]
    assert result.metrics[-1]["train_top1"] == 1.0


def test_a_resumed_run_repeats_an_unbroken_one_step_for_step(tmp_path, data):
    # every random part on: augmentation, RandAugment, MixUp/CutMix, stochastic depth, EMA
    settings = toy(data, crop_padding=2, hflip=True, randaugment=(2, 9), mixup=0.4, cutmix=0.4,
                   drop_path=0.2, ema=0.9, seed=3)  # fmt: skip
    unbroken, resumed = [], []
    full = train(settings, tmp_path / "a", progress=False, on_step=lambda s, loss: unbroken.append((s, loss)))
    train(
        settings,
        tmp_path / "b",
        stop_after=1,
        progress=False,
        on_step=lambda s, loss: resumed.append((s, loss)),
    )
    assert not (tmp_path / "b" / "MODEL_CARD.md").exists()  # stopped early: no card yet
    # a new process state: whatever happened in between must not matter
    torch.manual_seed(1234)
    rest = train(TrainSettings(epochs=3), tmp_path / "b", resume=True, progress=False,
                 on_step=lambda s, loss: resumed.append((s, loss)))  # fmt: skip
    assert resumed == unbroken
    assert [r["test_top1"] for r in rest.metrics] == [r["test_top1"] for r in full.metrics]
    a, b = load_file(tmp_path / "a" / "last.safetensors"), load_file(tmp_path / "b" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "b" / "MODEL_CARD.md").exists()


def test_each_epoch_writes_checkpoint_resume_state_and_metrics(tmp_path, data):
    settings = toy(data, epochs=2, ema=0.5)
    result = train(settings, tmp_path, command="coatnet train --test", progress=False)
    rows = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2] and rows == result.metrics
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0].startswith("epoch,step,lr,train_loss")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files behind
    info = read_checkpoint_info(tmp_path / "last.safetensors")
    assert info.class_names[0] == "T-shirt/top" and info.preprocessing.size == (32, 32)
    assert info.provenance["command"] == "coatnet train --test" and info.provenance["weights"] == "ema"
    assert info.provenance["test_top1"] == pytest.approx(rows[-1]["test_top1"])
    # the checkpoint holds the EMA weights, and the resume state holds both
    state = load_resume(tmp_path / "resume.safetensors")
    saved = load_checkpoint(tmp_path / "last.safetensors").state_dict()
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    assert all(torch.equal(saved[k], ema[k]) for k in saved)
    assert not all(torch.equal(saved[k], state["model"][k]) for k in saved)
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "coatnet train --test" in card and f"{100 * rows[-1]['test_top1']:.2f}%" in card


def test_resume_files_store_nested_state_without_pickle(tmp_path):
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))], lr=0.1, betas=(0.8, 0.9))
    optimizer.param_groups[0]["params"][0].grad = torch.ones(3)
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "rng": [torch.get_rng_state()], "none": None, "n": 3}
    path = save_resume(tmp_path / "r.safetensors", state)
    back = load_resume(path)
    assert back["n"] == 3 and back["none"] is None and torch.equal(back["rng"][0], state["rng"][0])
    assert list(back["optimizer"]["state"]) == [0]  # integer keys survive
    fresh = torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))], lr=0.1)
    fresh.load_state_dict(back["optimizer"])
    assert fresh.param_groups[0]["betas"] == [0.8, 0.9] or fresh.param_groups[0]["betas"] == (0.8, 0.9)
    (tmp_path / "bad.safetensors").write_bytes(b"\x80\x04 not safetensors")
    with pytest.raises(ValueError, match="not a readable resume file"):
        load_resume(tmp_path / "bad.safetensors")


def test_resume_without_a_previous_run_says_what_to_do(tmp_path, data, capsys):
    code = main(["train", "--out", str(tmp_path / "new"), "--resume", "--data", data, "--quiet"])
    assert code == 2
    assert "leave --resume off" in capsys.readouterr().err


def test_warmup_then_cosine_schedule():
    lr = _lr_schedule(TrainSettings(epochs=10, lr=1e-3, min_lr=1e-5, warmup_epochs=1), steps_per_epoch=100)
    assert lr(0) == pytest.approx(1e-5) and lr(99) == pytest.approx(1e-3)
    assert lr(100) == pytest.approx(1e-3) and lr(999) == pytest.approx(1e-5)
    assert lr(550) == pytest.approx((1e-3 + 1e-5) / 2, rel=0.02)  # half-way down the cosine
    assert all(lr(s) >= lr(s + 1) for s in range(100, 999))


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixed_targets_weigh_each_label_by_its_share_of_the_image(kind):
    settings = TrainSettings(mixup=1.0 if kind == "mixup" else 0.0, cutmix=1.0 if kind == "cutmix" else 0.0)
    augment = _augmentation(settings, Preprocessing(size=(8, 8), channels=1, mean=(0.5,), std=(0.5,)))
    torch.manual_seed(0)
    x = torch.stack([torch.full((1, 8, 8), float(i)) for i in range(6)])  # image i is all i
    out, targets = augment(x, torch.arange(6))
    for image, (a, b, weight_b) in zip(out, targets.tolist(), strict=True):
        # the image's mean is (1 - w) * a + w * b, whatever the shape of the mix
        assert image.mean().item() == pytest.approx((1 - weight_b) * a + weight_b * b, abs=1e-5)


def test_randaugment_keeps_grey_images_grey():
    augment = _augmentation(
        TrainSettings(randaugment=(2, 15)), Preprocessing(size=(16, 16), channels=1, mean=(0.5,), std=(0.5,))
    )
    out, labels = augment(torch.rand(4, 1, 16, 16), torch.arange(4))
    assert out.shape == (4, 1, 16, 16) and torch.equal(labels, torch.arange(4))


@pytest.mark.slow
def test_two_processes_with_ddp_end_with_equal_weights(tmp_path, data):
    script = tmp_path / "worker.py"
    script.write_text(
        "import os, sys, torch\n"
        "from safetensors.torch import save_file\n"
        "from coatnet.training.loop import TrainSettings, train\n"
        "torch.set_num_threads(1)\n"
        f"settings = TrainSettings(model='coatnet_toy', data={data!r}, img_size=32, epochs=2, batch_size=8,\n"
        "                          crop_padding=2, hflip=True, drop_path=0.1, ema=0.5)\n"
        "result = train(settings, sys.argv[1], progress=False)\n"
        "rank = os.environ['RANK']\n"
        "save_file({k: v.contiguous() for k, v in result.model.state_dict().items()},\n"
        "          os.path.join(sys.argv[1], f'rank{rank}.safetensors'))\n"
        "print('rank', rank, 'steps', result.metrics[-1]['step'])\n"
    )
    done = processes.torchrun(str(script), str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-3000:]
    a = load_file(tmp_path / "run" / "rank0.safetensors")
    b = load_file(tmp_path / "run" / "rank1.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # 96 images, 2 processes, batches of 8: 6 steps per epoch in each process
    assert "steps 12" in done.stdout
    rows = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert rows[-1]["step"] == 12 and rows[-1]["images_per_s"] > 0
    assert "(40 images)" in (tmp_path / "run" / "MODEL_CARD.md").read_text()  # both shares of the test set


@pytest.mark.gpu
def test_training_on_cuda_with_bf16_autocast(tmp_path, data):
    result = train(toy(data, epochs=2), tmp_path, device="cuda", progress=False)
    assert next(result.model.parameters()).is_cuda
    assert result.metrics[-1]["train_loss"] < result.metrics[0]["train_loss"] * 1.5
    assert load_checkpoint(tmp_path / "last.safetensors").config.name == "coatnet_toy"


def test_an_interrupted_epoch_loses_nothing_saved_and_resumes_exactly(tmp_path, data):
    settings = toy(data, crop_padding=2, hflip=True, seed=5)
    unbroken = []
    train(settings, tmp_path / "a", progress=False, on_step=lambda s, loss: unbroken.append(loss))

    def interrupt(step, loss):
        if step == 9:  # in the middle of the second epoch (6 steps per epoch)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(settings, tmp_path / "b", progress=False, on_step=interrupt)
    assert load_resume(tmp_path / "b" / "resume.safetensors")["epoch"] == 1
    assert len(json.loads((tmp_path / "b" / "metrics.json").read_text())) == 1
    resumed = []
    train(settings, tmp_path / "b", resume=True, progress=False, on_step=lambda s, loss: resumed.append(loss))
    assert resumed == unbroken[6:]


def test_training_on_an_image_folder_skips_and_reports_broken_images(tmp_path, capsys):
    from PIL import Image

    for split in ("train", "val"):
        for label, colour in enumerate(((250, 20, 20), (20, 20, 250))):
            folder = tmp_path / "data" / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(8):
                Image.new("RGB", (40, 30), tuple(min(255, c + 3 * i) for c in colour)).save(
                    folder / f"{i}.png"
                )
    (tmp_path / "data" / "train" / "class0" / "broken.png").write_bytes(b"not an image at all")
    (tmp_path / "data" / "train" / "class1" / "empty.jpg").write_bytes(b"")
    args = [
        "--model",
        "coatnet_toy",
        "--img-size",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "6",
        "--workers",
        "0",
    ]
    code = main(["train", "--out", str(tmp_path / "run"), "--data", str(tmp_path / "data"), *args])
    assert code == 0
    out = capsys.readouterr().out
    assert "skipped 2 unreadable image(s)" in out and "broken.png" in out and "empty.jpg" in out
    rows = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [r["skipped_images"] for r in rows] == [2, 2]  # each file counted once, not once per epoch
    info = read_checkpoint_info(tmp_path / "run" / "last.safetensors")
    assert info.class_names == ("class0", "class1") and info.preprocessing.channels == 3


def test_ema_warms_up_then_decays_at_the_given_rate():
    from coatnet.training.loop import _ema_with_warmup

    update = _ema_with_warmup(0.99)
    averaged, current = [torch.zeros(2)], [torch.ones(2)]
    update(averaged, current, torch.tensor(0))  # first update: decay 1/10, the average moves 90% of the way
    assert torch.allclose(averaged[0], torch.full((2,), 0.9))
    averaged = [torch.zeros(2)]
    update(averaged, current, torch.tensor(10_000))  # warmed up: decay 0.99
    assert torch.allclose(averaged[0], torch.full((2,), 0.01))
    counts = [torch.tensor([3])]
    update(counts, [torch.tensor([7])], torch.tensor(5))  # integer buffers are copied
    assert counts[0].item() == 7


def test_cli_resume_continues_the_saved_run_to_its_own_length(tmp_path, data, capsys):
    args = ["--data", data, "--model", "coatnet_toy", "--img-size", "32", "--batch-size", "16", "--quiet"]
    assert main(["train", "--out", str(tmp_path), "--epochs", "2", "--stop-after", "1", *args]) == 0
    assert main(["train", "--out", str(tmp_path), *args]) == 2  # it holds a run: refused without --resume
    assert "add --resume to continue it" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path), "--resume", "--quiet"]) == 0  # no --epochs: the saved 2
    assert f"resuming in {tmp_path}: kept 1 of 2 epochs" in capsys.readouterr().err
    rows = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2] and (tmp_path / "MODEL_CARD.md").exists()
    assert main(["train", "--out", str(tmp_path), "--resume", "--epochs", "3", "--quiet"]) == 0  # extend
    assert json.loads((tmp_path / "metrics.json").read_text())[-1]["epoch"] == 3
