"""Fine-tuning on real ads with a tiny GPT-Neo: the token file's packed blocks, method choice,
training that lowers validation perplexity, resume after a kill, LoRA, category conditioning,
training without the evaluation side, and aitextgen."""

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from helpers import run_to_end, run_until
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from adgen_utils import layout
from adgen_utils.corpus import facts
from adgen_utils.settings import Finetune
from adgen_utils.transformer import aitextgen, finetune, pretrained, stream
from adgen_utils.transformer.admodel import footing_score


@pytest.fixture(scope="module")
def ads(embedded_ads):
    return embedded_ads


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    return tiny_folder, pretrained.prepare_tokenizer(AutoTokenizer.from_pretrained(tiny_folder))


def test_the_token_file_holds_every_ad_packed_and_masks_only_the_tail(tiny, tmp_path):
    _, tokenizer = tiny
    texts = ["Apple Watch Band 38mm", "Sony TV Remote", "Fitbit Charge 4 Strap, Black"]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    packed = [i for sequence in ids for i in (*sequence, tokenizer.eos_token_id)]
    blocks = finetune.token_file_blocks(texts, tokenizer, tmp_path, 8, {"texts": 3})
    assert blocks.tokens == len(packed) and blocks.texts == 3 and len(blocks) == -(-len(packed) // 8)
    rows = [blocks[i] for i in range(len(blocks))]
    assert [i for row in rows for i in row["input_ids"].tolist()][: len(packed)] == packed
    assert sum(int(row["attention_mask"].sum()) for row in rows) == len(packed)
    tail = rows[-1]["labels"].tolist()[len(packed) % 8 or 8 :]
    assert all(label == stream.IGNORE for label in tail)
    assert tokenizer.decode(packed) == "<|endoftext|>".join(texts) + "<|endoftext|>"
    with pytest.raises(IndexError):
        blocks[len(blocks)]
    tokens = tmp_path / layout.CHECKPOINTS_FOLDER / layout.TOKENS_FOLDER / layout.TOKENS_FILE
    stamp = tokens.stat().st_mtime_ns
    finetune.token_file_blocks(texts, tokenizer, tmp_path, 16, {"texts": 3})  # the same texts: the file is reused
    assert tokens.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="empty text"):
        finetune.token_file_blocks(["Sony", ""], tokenizer, tmp_path / "other", 8, {})


def test_category_conditioning_round_trips(ads, tiny):
    _, tokenizer = tiny
    texts = finetune.training_texts(ads.head(2), category_prefix=True)
    assert texts[0] == f"{ads['category'].iloc[0]} | {ads['ad'].iloc[0]}"
    assert pretrained.strip_category(texts[0]) == ads["ad"].iloc[0]
    assert pretrained.ad_prompt("Sony TV", tokenizer, "electronics") == "<|endoftext|>electronics | Sony TV"
    assert pretrained.ad_prompt(" ", tokenizer, "electronics") == "<|endoftext|>electronics |"
    assert pretrained.ad_prompt("Sony TV ", tokenizer) == "<|endoftext|>Sony TV"
    assert pretrained.strip_category("electronics | Sony TV 55 inch") == "Sony TV 55 inch"
    assert finetune.training_texts(ads.head(2)) == ads["ad"].head(2).tolist()
    category = ads["category"].iloc[0]
    assert finetune.training_texts(ads.head(1), True)[0].partition(pretrained.CATEGORY_SEPARATOR)[0] == category


def test_keyword_examples_come_beside_the_plain_ads_and_prompts_carry_keywords(ads, tiny):
    _, tokenizer = tiny
    some = ads.head(200)
    mixed = finetune.training_texts(some, keyword_examples=True, seed=1)
    plain = some["ad"].tolist()
    assert [t for t in mixed if not t.startswith(pretrained.KEYWORDS_LABEL)] == plain  # every ad, in order
    examples = [t for t in mixed if t.startswith(pretrained.KEYWORDS_LABEL)]
    assert 0.3 * len(plain) < len(examples) <= len(plain)  # the ads that state facts, once more
    for text in examples:
        line, ad = text.split("\n")
        keywords = line.removeprefix(pretrained.KEYWORDS_LABEL).split("; ")
        assert ad in plain and 1 <= len(keywords) <= 3 and not facts.missing_keywords(ad, keywords)
    assert finetune.training_texts(some, keyword_examples=True, seed=1) == mixed  # drawn with the seed
    with_category = finetune.training_texts(some.head(30), category_prefix=True, keyword_examples=True)
    assert all(" | " in t.split("\n")[-1] for t in with_category)  # "Keywords: ...\n<category> | <ad>"
    assert pretrained.ad_prompt("Sony TV", tokenizer, None, ("55 inch", "black")) == (
        "<|endoftext|>Keywords: 55 inch; black\nSony TV"
    )
    assert pretrained.build_prompt("Sony TV", ["Ad one"], keywords=["black"]).endswith(
        "Ad one\nKeywords: black\nSony TV"
    )
    assert pretrained.build_prompt("Sony TV", keywords=["black"]) == "Keywords: black\nSony TV"


def test_method_choice_follows_the_memory_estimate(tiny):
    folder, _ = tiny
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert finetune.count_parameters(folder) == sum(p.numel() for p in model.parameters())
    neo_13b, neo_125m = 1_315_575_808, 125_198_592
    assert finetune.memory_estimates_gib(neo_13b)["full"] == pytest.approx(19.6, abs=0.1)
    assert finetune.choose_method(neo_125m, gpu_memory_gib=15.0)[0] == "full"
    method, reason = finetune.choose_method(neo_13b, gpu_memory_gib=15.0)
    assert method in {"lora", "qlora"} and "19.6 GiB" in reason
    assert finetune.choose_method(neo_13b, gpu_memory_gib=80.0)[0] == "full"
    assert finetune.choose_method(neo_13b, gpu_memory_gib=None)[0] == "full"  # no GPU: CPU memory
    assert finetune.choose_method(neo_13b, "lora", gpu_memory_gib=None) == ("lora", "lora (asked for)")
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        finetune.choose_method(neo_125m, "qlora", gpu_memory_gib=None)
    with pytest.raises(ValueError, match="auto, full, lora or qlora"):
        finetune.choose_method(neo_125m, "everything")


@pytest.fixture(scope="module")
def run_dir(ads_run_dir):
    return ads_run_dir


def tune(settings: Finetune, run_dir, **options):
    _, validation = finetune.read_training_ads(settings, run_dir)
    return finetune.finetune(settings, run_dir, footing_score(validation, settings.category_prefix), **options)


def test_fine_tuning_lowers_validation_perplexity_and_saves_a_plain_model(tiny, run_dir):
    folder, _ = tiny
    settings = Finetune(
        base_model=str(folder), max_train_ads=400, validation_ads=60, max_steps=-1, epochs=2.0, learning_rate=3e-3,
        eval_steps=None, batch_size=8,
    )  # fmt: skip
    result = tune(settings, run_dir, progress=False)
    evaluated = result.history.dropna(subset=["eval_loss"])
    assert evaluated["epoch"].tolist() == [0.0, 1.0, 2.0]  # before training, then every epoch
    assert result.perplexity_after < 0.5 * result.perplexity_before
    assert result.summary["method"] == "full" and result.summary["train_tokens"] > 10_000
    assert result.model_dir == layout.model_dir(run_dir, layout.FINETUNED)
    files = {p.name for p in result.model_dir.iterdir()}
    assert "model.safetensors" in files and "pytorch_model.bin" not in files and "checkpoints" not in files
    curve = pd.read_csv(result.model_dir / layout.QUALITY_CURVE_FILE)
    assert list(curve.columns) == finetune.CURVE_COLUMNS and curve["validation_ads"].eq(60).all()
    assert curve["bits_per_char"].iloc[-1] < curve["bits_per_char"].iloc[0] and curve["train_flops"].iloc[0] == 0
    generated = pipeline("text-generation", model=str(result.model_dir))(
        "Apple Watch", max_new_tokens=6, do_sample=False
    )
    assert generated[0]["generated_text"].startswith("Apple Watch")
    again = tune(settings, run_dir, progress=False)
    assert again.summary == result.summary  # finished: reloaded, not retrained
    with pytest.raises(FileExistsError, match="other settings"):
        tune(replace(settings, block_size=32), run_dir)


def test_lora_trains_adapters_and_saves_them_merged(tiny, run_dir, tmp_path):
    folder, _ = tiny
    (tmp_path / layout.DATA_FOLDER).symlink_to(run_dir / layout.DATA_FOLDER)
    settings = Finetune(
        base_model=str(folder),
        method="lora",
        max_train_ads=200,
        validation_ads=30,
        max_steps=-1,
        learning_rate=5e-3,
        batch_size=8,
    )
    result = tune(settings, tmp_path, progress=False)
    assert result.summary["method"] == "lora" and result.perplexity_after < result.perplexity_before
    assert (result.model_dir / "adapter" / "adapter_model.safetensors").is_file()
    with safe_open(str(result.model_dir / "model.safetensors"), "pt") as weights:
        assert not [k for k in weights.keys() if "lora" in k]  # noqa: SIM118 (safe_open is not iterable)
    merged = AutoModelForCausalLM.from_pretrained(result.model_dir)
    base = AutoModelForCausalLM.from_pretrained(folder)
    changed = [
        n
        for (n, a), (_, b) in zip(merged.named_parameters(), base.named_parameters())
        if not np.allclose(a.detach().numpy(), b.detach().numpy())
    ]
    assert changed and all(n.endswith("weight") for n in changed)


def test_training_imports_no_evaluation():
    code = "import sys, adgen_utils.transformer.finetune; print('adgen_utils.transformer.admodel' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


TRAIN_SCRIPT = textwrap.dedent("""
    import sys, time
    from transformers import TrainerCallback
    import adgen_utils.transformer.finetune as finetune
    from adgen_utils.settings import Finetune
    from adgen_utils.transformer.admodel import footing_score

    class Report(TrainerCallback):  # announces each checkpoint; dawdles after step argv[2]'s so it can be killed
        def on_save(self, args, state, control, **kwargs):
            print(f"saved {{state.global_step}} in epoch {{state.epoch:.2f}}", flush=True)
            if state.global_step == int(sys.argv[2]):
                time.sleep(60)

    finetune.StepProgress = Report
    settings = Finetune(base_model={model!r}, max_train_ads=400, validation_ads=40, learning_rate=3e-3, {settings})
    _, validation = finetune.read_training_ads(settings, sys.argv[1])
    minutes = float(sys.argv[3]) if len(sys.argv) > 3 else 15.0
    score = footing_score(validation, False)
    result = finetune.finetune(settings, sys.argv[1], score, checkpoint_minutes=minutes)
    print("resumed_from", result.summary["resumed_from"], "steps", result.summary["steps"])
""")


def saved_steps(lines: list[str]) -> list[int]:
    return [int(line.split()[1]) for line in lines if line.startswith("saved")]


def run_folder(run_dir, tmp_path):
    """A fresh run folder over the same ads."""
    run = tmp_path / "run"
    run.mkdir()
    (run / layout.DATA_FOLDER).symlink_to(run_dir / layout.DATA_FOLDER)
    return run


def test_a_killed_fine_tune_resumes_from_its_last_checkpoint(tiny, run_dir, tmp_path):
    folder, _ = tiny
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT.format(model=str(folder), settings="max_steps=6, eval_steps=2"))
    run = run_folder(run_dir, tmp_path)
    tuned = layout.model_dir(run, layout.FINETUNED)
    assert saved_steps(run_until(script, run, "saved 4", "4")) == [2, 4]
    assert (tuned / layout.CHECKPOINTS_FOLDER / "checkpoint-4").is_dir()
    assert not (tuned / layout.FINETUNE_RESULT_FILE).exists()
    resumed = run_to_end(script, run, "0")
    assert "resumed_from checkpoint-4 steps 6" in resumed
    assert "saved 2" not in resumed and "saved 6" in resumed
    history = json.loads((tuned / layout.FINETUNE_RESULT_FILE).read_text())
    assert history["steps"] == 6
    evaluated = pd.read_csv(tuned / layout.HISTORY_FILE).dropna(subset=["eval_loss"])
    assert evaluated["step"].tolist() == [0, 2, 4, 6]  # the evaluations before the kill are kept


def test_a_timed_checkpoint_is_asked_for_once_its_minutes_have_passed():
    from transformers import TrainerControl, TrainerState

    now = [0.0]
    timed = finetune.TimedCheckpoint(minutes=15, clock=lambda: now[0])
    state, control = TrainerState(), TrainerControl()
    timed.on_train_begin(None, state, control)
    asked = []
    for minute in [5, 14, 16, 20, 31, 32]:
        now[0] = minute * 60.0
        control.should_save = False  # as the Trainer does at each step's beginning
        if timed.on_step_end(None, state, control).should_save:
            asked.append(minute)
            timed.on_save(None, state, control)
    assert asked == [16, 31]


def test_timed_checkpoints_come_within_an_epoch_and_resume(tiny, run_dir, tmp_path):
    folder, _ = tiny
    script = tmp_path / "train.py"
    # Evaluated and checkpointed per epoch (no eval_steps), an epoch far longer than the run.
    script.write_text(TRAIN_SCRIPT.format(model=str(folder), settings="max_steps=5, eval_steps=None"))
    run = run_folder(run_dir, tmp_path)
    tuned = layout.model_dir(run, layout.FINETUNED)
    # checkpoint_minutes ~ 0: a checkpoint after every optimizer step, though the strategy is per epoch;
    # resumed with the default of 15 minutes: no timed checkpoint, the one at max_steps still comes.
    assert saved_steps(run_until(script, run, "saved 3", "3", "1e-9")) == [1, 2, 3]
    assert (tuned / layout.CHECKPOINTS_FOLDER / "checkpoint-3" / "trainer_state.json").is_file()
    resumed = run_to_end(script, run, "0", "15")
    assert "resumed_from checkpoint-3 steps 5" in resumed
    assert "saved 4" not in resumed
    evaluated = pd.read_csv(tuned / layout.HISTORY_FILE).dropna(subset=["eval_loss"])
    assert evaluated["step"].tolist() == [0, 5]


def test_aitextgen_needs_its_own_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ADGEN_AITEXTGEN_PYTHON", str(tmp_path / "missing" / "python"))
    with pytest.raises(FileNotFoundError, match="setup_aitextgen.sh"):
        aitextgen.run_aitextgen(["Sony TV"], tmp_path)
    with pytest.raises(ValueError, match="one ad per line"):
        aitextgen.run_aitextgen(["Sony\nTV"], tmp_path, python=sys.executable)


def _aitextgen_ready() -> bool:
    try:
        aitextgen.aitextgen_python()
        return True
    except FileNotFoundError:
        return False


@pytest.mark.skipif(
    not _aitextgen_ready() and os.environ.get("CI") != "true",
    reason="aitextgen's environment is not built (bash scripts/setup_aitextgen.sh); CI always builds it",
)
def test_aitextgen_trains_a_tiny_model_and_generates(ads, tmp_path):
    train = ads[ads["split"] == "train"]["ad"].head(1500).tolist()
    report = aitextgen.run_aitextgen(
        train,
        tmp_path / "aitextgen",
        model="tiny",
        steps=30,
        batch_size=8,
        learning_rate=3e-3,
        prompts=["Sony TV", "Apple Watch"],
    )
    assert report["steps"] == 30 and report["training_loss_sample"] < 6.0  # log(1000) = 6.9 untrained
    assert len(report["ads"]) == 2 and all(ad.startswith(p) for ad, p in zip(report["ads"], ["Sony TV", "Apple Watch"]))
    assert report["peak_rss_mib"] > 50
    model, tokenizer = pretrained.load_causal_lm(report["model_dir"])  # safetensors, loads in the main stack
    assert model.config.model_type == "gpt2"


@pytest.mark.skipif(
    not _aitextgen_ready() and os.environ.get("CI") != "true",
    reason="aitextgen's environment is not built (bash scripts/setup_aitextgen.sh); CI always builds it",
)
def test_aitextgen_fine_tunes_a_local_safetensors_model_with_its_own_tokenizer(ads, tiny, tmp_path):
    folder, _ = tiny
    train = ads[ads["split"] == "train"]["ad"].head(300).tolist()
    report = aitextgen.run_aitextgen(
        train, tmp_path / "aitextgen", model=str(folder), steps=4, batch_size=4, prompts=["Sony TV"]
    )
    assert report["parameters"] == finetune.count_parameters(folder) and report["ads"][0].startswith("Sony TV")
    assert (tmp_path / "aitextgen" / "base_model" / "pytorch_model.bin").is_file()  # aitextgen's own format
    assert (
        AutoTokenizer.from_pretrained(report["model_dir"]).get_vocab()
        == AutoTokenizer.from_pretrained(folder).get_vocab()
    )
