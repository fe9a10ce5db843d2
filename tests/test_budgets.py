"""Trainings that time themselves first: the LSTMs' plan (lessons 03, 04), fine-tuning's plan (lesson
06, ``adgen finetune``), the precision they train in and the machine they say. Real tiny models."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from lstm.lesson import lesson_model
from transformers import AutoTokenizer

from adgen_utils import hardware
from adgen_utils.corpus.sequences import TokenArrays
from adgen_utils.lstm import model as lstm_model
from adgen_utils.lstm import training as lstm_training
from adgen_utils.settings import Finetune
from adgen_utils.transformer import finetune, pretrained
from adgen_utils.transformer.admodel import footing_score


def arrays(ads: int, length: int = 12, vocabulary: int = 50) -> TokenArrays:
    rng = np.random.default_rng(0)
    ids = rng.integers(4, vocabulary, size=ads * length).astype(np.uint32)
    return TokenArrays(ids, np.arange(0, ads * length + 1, length, dtype=np.int64))


def test_an_lstm_plan_times_a_copy_and_cuts_the_ads_to_the_budget(tmp_path):
    model = lesson_model("embedding", 50)
    before = [w.copy() for w in model.get_weights()]
    train, validation = arrays(640), arrays(64)
    full = lstm_training.plan_fit
    plan = full(model, train, validation, batch_size=32, epochs=3, minutes=None, folder=tmp_path / "a")
    assert (plan.wanted, plan.chosen, plan.passes, plan.unit) == (20, 20, 3, "batch of 32 ads")
    assert plan.seconds_per_step > 0 and plan.fixed_seconds > 0  # fit's validation pass is in the estimate
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # timed on a copy
    assert model.optimizer.iterations.numpy() == 0
    # A budget too short for anything: one batch an epoch (the arithmetic of cuts: tests/test_pace.py).
    cut = full(model, train, validation, batch_size=32, epochs=3, minutes=1e-4, folder=tmp_path / "b")
    assert cut.cut and cut.chosen == 1
    assert len(train.sample(cut.chosen * 32)) == 32 and len(train.sample(plan.chosen * 32)) == 640  # what trains
    # A resumed training reads its plan back instead of timing again (same ads).
    again = full(model, train, validation, batch_size=32, epochs=3, minutes=1e-4, folder=tmp_path / "b")
    assert again == cut


def ragged(lengths) -> TokenArrays:
    """Ads of the given lengths (<bos> and <eos> included), made of word ids."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return TokenArrays(np.full(int(offsets[-1]), 7, dtype=np.uint32), offsets)


def test_the_lstm_plan_times_the_mean_padded_batch_not_the_mean_ad():
    lengths = np.random.default_rng(1).integers(4, 60, size=200)
    ads = ragged(lengths)
    padded = [int(inputs.shape[1]) for inputs, _, _ in lstm_model.many_to_many_dataset(ads, 16, shuffle=True)]
    # One chunk of 32 batches holds every ad: sorted by length, the batches are the same in any order.
    assert lstm_model.mean_batch_length(ads, 16) == pytest.approx(np.mean(padded))
    assert lstm_model.mean_batch_length(ads, 16) > lengths.mean() - 1  # padding costs steps
    many = ragged(np.random.default_rng(2).integers(4, 60, size=3000))  # several chunks: shuffled apart
    padded = [int(inputs.shape[1]) for inputs, _, _ in lstm_model.many_to_many_dataset(many, 16, shuffle=True)]
    assert lstm_model.mean_batch_length(many, 16) == pytest.approx(np.mean(padded), rel=0.05)


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    return tiny_folder, pretrained.prepare_tokenizer(AutoTokenizer.from_pretrained(tiny_folder))


@pytest.fixture(scope="module")
def run_dir(ads_run_dir):
    return ads_run_dir


def test_a_fine_tuning_plan_leaves_the_weights_and_counts_its_evaluations(tiny, run_dir, tmp_path):
    folder, tokenizer = tiny
    settings = Finetune(base_model=str(folder), max_train_ads=300, validation_ads=20, max_steps=40, eval_steps=10)
    train, validation = finetune.read_training_ads(settings, run_dir)
    texts = finetune.training_texts(train)
    record = finetune.training_record(settings, folder, len(texts))
    model, tokenizer = finetune.load_for_training(folder, "full")
    blocks = finetune.token_file_blocks(texts, tokenizer, tmp_path, settings.block_size, record)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    score = footing_score(validation, False)
    plan = finetune.plan_steps(model, tokenizer, blocks, settings, "fp32", tmp_path, score)
    assert all(torch.equal(before[name], p) for name, p in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())
    assert (plan.wanted, plan.chosen) == (40, 40) and plan.fixed_seconds > 0
    assert finetune.evaluations(40, 10, 100) == 5 and finetune.evaluations(45, 10, 100) == 6
    assert finetune.evaluations(7, None, 3) == 4  # every epoch of 3 steps, and the last
    # a budget too short for anything: one step still runs (the arithmetic of cuts: tests/test_pace.py)
    cut = finetune.plan_steps(model, tokenizer, blocks, replace(settings, minutes=1e-4), "fp32", tmp_path / "c", score)
    assert cut.cut and cut.chosen == 1
    assert finetune.planned_steps(replace(settings, max_steps=-1, epochs=2.0), 100) == 2 * 25  # 4 blocks a step


def test_fine_tuning_to_a_budget_records_its_plan_estimate_and_precision(tiny, run_dir, tmp_path):
    folder, _ = tiny
    settings = Finetune(
        base_model=str(folder), max_train_ads=300, validation_ads=20, max_steps=400, eval_steps=None,
        precision="fp32", learning_rate=3e-3,
    )  # fmt: skip
    _, validation = finetune.read_training_ads(settings, run_dir)
    score = footing_score(validation, False)
    # this machine's pace, measured as the training will measure it: a budget for about 30 steps
    model, tokenizer = finetune.load_for_training(folder, "full")
    texts = finetune.training_texts(finetune.read_training_ads(settings, run_dir)[0])
    record = finetune.training_record(settings, folder, len(texts))
    blocks = finetune.token_file_blocks(texts, tokenizer, tmp_path, settings.block_size, record)
    pace_here = finetune.plan_steps(model, tokenizer, blocks, settings, "fp32", tmp_path, score)
    minutes = (30 * pace_here.seconds_per_step + pace_here.fixed_seconds) / 60
    result = finetune.finetune(replace(settings, minutes=minutes), run_dir, score, progress=False)
    summary = result.summary
    assert summary["precision"] == "fp32" and summary["plan"]["minutes"] == minutes
    assert 5 <= summary["steps"] == summary["plan"]["chosen"] < 400  # the budget holds far fewer than 400
    assert summary["train_wall_seconds"] > 0 and "instruction_sets" in summary["machine"]
    assert result.perplexity_after < result.perplexity_before


def test_precision_is_the_chips_unless_asked(monkeypatch):
    cpu = hardware.Device("cpu", "x86_64", None, None, cpu_bf16=False)
    t4 = hardware.Device("cuda", "Tesla T4", (7, 5), 15.0)
    assert hardware.chosen_precision("auto", cpu) == "fp32"
    assert hardware.chosen_precision("auto", t4) == "fp16"
    assert hardware.chosen_precision("fp32", t4) == "fp32"  # asked: kept
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        hardware.chosen_precision("fp16", cpu)
    with pytest.raises(ValueError, match="precision must be auto or one of"):
        hardware.chosen_precision("int8", cpu)


def test_the_machine_says_its_instruction_sets(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_info", lambda field: "avx avx2 fma sse4_2")
    assert hardware.instruction_sets() == ["AVX2", "FMA"]
    assert not hardware.cpu_computes_bf16()
    monkeypatch.setattr(hardware, "cpu_info", lambda field: "avx2 avx512f avx512_bf16 amx_bf16")
    assert hardware.instruction_sets() == ["AVX2", "AVX-512", "AVX512-BF16", "AMX-BF16"]
    assert hardware.cpu_computes_bf16()
