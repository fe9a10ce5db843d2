"""Publishing a fine-tuned tiny GPT-Neo: the model card, the reload check, the files staged for
upload, dry runs, and that the Hub token never reaches the output, the files or the error."""

import json
import shutil
import sys
import time
import traceback
import types

import pandas as pd
import pytest
from huggingface_hub import ModelCard

from adgen_utils import errors
from adgen_utils.study import publishing
from adgen_utils.transformer import finetune

SECRET = "hf_test_SECRET123"
PROMPTS = ["Sony TV", "Apple Watch", "Labor Day discounts for"]
METRICS = {"per-word perplexity": 41.2, "bits per character": 1.9, "top-1 accuracy": 0.21, "top-5 accuracy": 0.38}


def main(argv):
    """The adgen command (imported when a test runs it)."""
    from adgen_utils.apps.cli import main as adgen

    return adgen(argv)


@pytest.fixture(scope="module")
def tuned(embedded_ads, tiny_folder, tmp_path_factory):
    """The tiny model really fine-tuned (one epoch on 200 ads, a few seconds) in run_dir/models/finetuned."""
    from adgen_utils.corpus.data import LoadReport, save_dataset, validation_ads
    from adgen_utils.settings import Finetune
    from adgen_utils.transformer.admodel import footing_score

    run_dir = tmp_path_factory.mktemp("run")
    save_dataset(embedded_ads, LoadReport(source="embedded"), run_dir / "data")
    settings = Finetune(
        base_model=str(tiny_folder), max_train_ads=200, validation_ads=30, block_size=64, batch_size=8,
        epochs=1.0, max_steps=-1, learning_rate=3e-3, eval_steps=None,
    )  # fmt: skip
    score = footing_score(validation_ads(run_dir, settings.validation_ads), category_prefix=False)
    return finetune.finetune(settings, run_dir, score, progress=False)


@pytest.fixture
def folder(tuned, tmp_path):
    """A copy of the fine-tuned folder, inside run_dir/models/ (tests may write into it)."""
    return shutil.copytree(tuned.model_dir, tmp_path / "models" / "finetuned")


@pytest.fixture
def no_token(monkeypatch):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "google.colab", None)  # `from google.colab import ...` fails: not on Colab


@pytest.fixture
def dead_hub(monkeypatch):
    """A fake token and a Hub endpoint where nothing listens: any push fails at once."""
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "2")


def _all_bytes(root) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_the_card_carries_hub_metadata_training_settings_and_metrics(folder, tuned, tmp_path):
    card = publishing.build_model_card(
        folder, "me/adgen-tiny", metrics=METRICS, widget_prompts=PROMPTS, inference_parameters={"temperature": 0.7}
    )
    card.save(tmp_path / "card.md")
    loaded = ModelCard.load(tmp_path / "card.md")
    meta = loaded.data.to_dict()
    assert meta["license"] == "other" and "base_model" not in meta  # the tiny base: no Hub id, no licence
    assert meta["pipeline_tag"] == "text-generation" and meta["library_name"] == "transformers"
    assert meta["language"] == "en" and "advertising" in meta["tags"]
    assert [w["text"] for w in meta["widget"]] == PROMPTS
    assert meta["inference"]["parameters"] == {**publishing.INFERENCE_PARAMETERS, "temperature": 0.7}
    body, summary = loaded.text, tuned.summary
    for section in [
        "## Intended use",
        "## Training data and licence",
        "## Training procedure",
        "## Evaluation",
        "## How to use",
        "## Limitations",
        "## Citation and credits",
    ]:
        assert section in body
    for value in [
        "41.2",
        "1.9",
        "0.21",
        "0.38",
        f"{summary['perplexity_before']:.4g}",
        f"{summary['perplexity_after']:.4g}",
        f"{summary['train_tokens']:,}",
        "| learning rate | 0.003 |",
        "| block size (model tokens) | 64 |",
        f"| optimizer steps | {summary['steps']} |",
        'pipeline("text-generation", model="me/adgen-tiny")',
        "tokenizer.eos_token + ",
        "CC0 1.0",
        "Fitbit Charge",
    ]:
        assert value in body, value
    assert str(tuned.model_dir.parent) not in body  # no local paths on the Hub


def test_the_licence_and_base_model_come_from_the_base_folder(folder, tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "adgen_source.json").write_text(
        json.dumps(
            {"name": "smollm2-135m", "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "license": "Apache-2.0"}
        )
    )
    summary = json.loads((folder / "finetune.json").read_text())
    summary["base_model"] = str(base)
    summary["settings"]["config"]["category_prefix"] = True
    (folder / "finetune.json").write_text(json.dumps(summary))
    meta = publishing.build_model_card(folder, "me/adgen").data.to_dict()
    assert meta["license"] == "apache-2.0" and meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert publishing.build_model_card(folder, "me/adgen", license="MIT").data.license == "mit"  # asked for
    assert "electronics | Sony TV" in publishing.build_model_card(folder, "me/adgen").text  # category prompts


def test_the_fine_tuned_folder_reloads_the_same_both_ways(folder):
    table = publishing.check_reload(folder, PROMPTS, max_new_tokens=12)
    assert list(table.columns) == ["prompt", "from_pretrained", "pipeline", "same"]
    assert table["prompt"].tolist() == PROMPTS and table["same"].all()
    for _, row in table.iterrows():
        for way in ("from_pretrained", "pipeline"):
            assert row[way].startswith(row["prompt"]) and "\n" not in row[way] and "<|endoftext|>" not in row[way]
    assert (table["from_pretrained"].str.len() > table["prompt"].str.len()).any()  # it did write something


def test_a_dry_run_writes_the_card_and_stages_only_the_model(folder):
    for junk in ["checkpoints/checkpoint-2/model.safetensors", "adapter/adapter_model.safetensors", "notes.txt"]:
        (folder / junk).parent.mkdir(parents=True, exist_ok=True)
        (folder / junk).write_text("not for the Hub")
    card = publishing.build_model_card(folder, "me/adgen-tiny", widget_prompts=PROMPTS)
    result = publishing.publish(folder, "me/adgen-tiny", card)
    assert result["pushed"] is False and "dry run" in result["reason"]
    assert (folder / "README.md").read_text(encoding="utf-8") == str(card)
    names = [f["path"] for f in result["files"]]
    assert {"model.safetensors", "config.json", "tokenizer.json", "finetune.json", "history.csv", "README.md"} <= set(
        names
    )
    assert not [n for n in names if n.startswith(("checkpoints", "adapter")) or n == "notes.txt"]
    assert names == [p.name for p in publishing.staged_files(folder)]
    assert result["total_mib"] == pytest.approx(sum(f["mib"] for f in result["files"]), abs=0.01)
    assert publishing.publish(folder, "me/adgen-tiny", card, push=True, token=None)["pushed"] is False


def test_a_file_holding_the_token_is_never_staged(folder):
    (folder / "tokenizer_config.json").write_text(json.dumps({"oops": SECRET}))
    with pytest.raises(errors.PublishError, match="tokenizer_config.json") as error:
        publishing.staged_files(folder, token=SECRET)
    assert SECRET not in str(error.value)


def test_find_token_names_its_source_never_the_value(monkeypatch, no_token):
    assert publishing.find_token() == (None, publishing.NO_TOKEN)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_other")
    assert publishing.find_token() == ("hf_other", "environment variable HUGGING_FACE_HUB_TOKEN")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    token, source = publishing.find_token()
    assert token == SECRET and source == "environment variable HF_TOKEN" and SECRET not in source
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name)
    colab = types.ModuleType("google.colab")
    colab.userdata = types.SimpleNamespace(get=lambda name: {"HF_TOKEN": SECRET}[name])
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert publishing.find_token() == (SECRET, "Colab secret HF_TOKEN")
    colab.userdata = types.SimpleNamespace(get=lambda name: {}[name])  # secret not set: userdata raises
    assert publishing.find_token() == (None, publishing.NO_TOKEN)


def test_a_failed_push_never_shows_the_token(folder, dead_hub, capsys):
    started = time.perf_counter()
    status = main(["publish", "--model", str(folder), "--repo-id", "me/adgen-test", "--push"])
    seconds = time.perf_counter() - started
    out, err = capsys.readouterr()
    assert status == 1 and "adgen: error: pushing to me/adgen-test failed" in err
    assert SECRET not in out + err and SECRET.encode() not in _all_bytes(folder.parent.parent)
    assert seconds < 60  # loading the tiny model twice and one refused connection: no long retries

    card = publishing.build_model_card(folder, "me/adgen-test")
    started = time.perf_counter()
    with pytest.raises(errors.PublishError) as error:
        publishing.publish(folder, "me/adgen-test", card, push=True, token=SECRET)
    assert time.perf_counter() - started < 5
    assert error.value.__cause__ is None and error.value.__context__ is None
    assert SECRET not in "".join(traceback.format_exception(error.value))


def test_a_hub_error_quoting_the_token_is_scrubbed(folder, monkeypatch):
    from huggingface_hub import HfApi

    def refuse(self, repo_id, **options):
        raise RuntimeError(f"401 Unauthorized: invalid token {self.token} for {repo_id}")

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    card = publishing.build_model_card(folder, "me/adgen-test")
    with pytest.raises(errors.PublishError, match=r"invalid token \*\*\* for me/adgen-test") as error:
        publishing.publish(folder, "me/adgen-test", card, push=True, token=SECRET)
    assert SECRET not in "".join(traceback.format_exception(error.value))


def test_push_without_a_token_stops_before_anything(folder, no_token, capsys):
    assert main(["publish", "--model", str(folder), "--repo-id", "me/adgen-test", "--push"]) == 2
    assert "HF_TOKEN" in capsys.readouterr().err
    assert not (folder / "README.md").exists()


def test_a_dry_run_from_the_command_line_uses_notebook_07s_metrics(folder, no_token, tmp_path, capsys):
    csv = tmp_path / "07_comparison.csv"
    csv.write_text(
        "model,setting,per_word_perplexity,bits_per_char,top1_accuracy,top5_accuracy,note\n"
        "lstm,trained from scratch,180.5,2.9,0.11,0.25,x\nmy tiny model,fine-tuned,41.2,1.9,0.21,0.38,y\n"
    )
    assert publishing.read_metrics(csv) == METRICS
    assert (
        main(
            [
                "publish",
                "--model",
                str(folder),
                "--repo-id",
                "me/adgen-test",
                "--metrics",
                str(csv),
                "--prompt",
                "Sony TV",
                "--prompt",
                "Garmin",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["pushed"] is False and summary["reload_same"] and summary["metrics"] == METRICS
    assert summary["token"] == publishing.NO_TOKEN and "Garmin" in err  # the reload table
    card = ModelCard.load(folder / "README.md")
    assert [w["text"] for w in card.data.widget] == ["Sony TV", "Garmin"] and "| top-5 accuracy | 0.38 |" in card.text
    (tmp_path / "metrics.json").write_text(json.dumps({"top-1 accuracy": 0.5}))
    assert publishing.read_metrics(tmp_path / "metrics.json") == {"top-1 accuracy": 0.5}
    assert publishing.read_metrics(tmp_path / "absent.csv", missing_ok=True) is None


@pytest.mark.parametrize("repo_id", ["no-slash", "a/b/c", "me/", "/name", "me/bad name", "me/a--b"])
def test_a_bad_repository_id_is_refused(folder, repo_id, capsys):
    with pytest.raises(ValueError, match="owner/name"):
        publishing.check_repo_id(repo_id)
    with pytest.raises(ValueError, match="owner/name"):
        publishing.build_model_card(folder, repo_id)
    assert main(["publish", "--model", str(folder), "--repo-id", repo_id]) == 2
    assert "owner/name" in capsys.readouterr().err


def test_a_folder_without_weights_is_refused_clearly(folder, capsys):
    (folder / "model.safetensors").unlink()
    for call in (
        lambda: publishing.check_reload(folder, PROMPTS),
        lambda: publishing.build_model_card(folder, "me/x"),
        lambda: publishing.staged_files(folder),
    ):
        with pytest.raises(FileNotFoundError, match="lacks model.safetensors"):
            call()
    assert main(["publish", "--model", str(folder), "--repo-id", "me/adgen-test"]) == 2
    assert "lacks model.safetensors" in capsys.readouterr().err


def test_metrics_come_from_the_fine_tuned_row_whatever_its_label(folder, tiny_folder, tmp_path):
    """The evaluation's real comparison table, rows of the footing: the fine-tuned model's row is
    found by its setting, not by the name the table shows."""
    from adgen_utils.models import FINE_TUNED
    from adgen_utils.study.footing import evaluate_ad_model, load_ad_model

    models = [load_ad_model(tiny_folder, name="fine-tuned? no: zero-shot"), load_ad_model(folder, name="ours")]
    test = pd.DataFrame({"ad": ["Sony TV Remote Black", "Apple Watch Band"]})
    table = pd.DataFrame([evaluate_ad_model(model, test) for model in models]).set_index("model")
    table.to_csv(tmp_path / "07_comparison.csv")
    assert table.loc["ours", "setting"] == FINE_TUNED and table.loc["ours", "source"] == str(folder.resolve())
    metrics = publishing.read_metrics(tmp_path / "07_comparison.csv")
    assert metrics["per-word perplexity"] == pytest.approx(table.loc["ours", "per_word_perplexity"])
    assert metrics["top-5 accuracy"] == pytest.approx(table.loc["ours", "top5_accuracy"])
    table.drop(index="ours").to_csv(tmp_path / "no_fine_tuned.csv")
    assert publishing.read_metrics(tmp_path / "no_fine_tuned.csv") is None
    table.drop(columns="setting").to_csv(tmp_path / "older.csv")
    with pytest.raises(ValueError, match="no 'setting' column"):
        publishing.read_metrics(tmp_path / "older.csv")
