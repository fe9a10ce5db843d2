"""python -m benchmarks.results save: a run folder's figures (lesson 07's table, lesson times, training
figures of 03, 04 and 06) saved as results/run_PROFILE.json with date, machine, profile and command."""

import json

import pytest

from benchmarks.results import main, save_run, with_provenance

COMPARISON = (
    "model,kind,unknown_words_charged,ads,predictions,characters,oov_share,top1_accuracy,top5_accuracy,"
    "per_word_perplexity,bits_per_char,model_tokens_per_word,seconds\n"
    "LSTM (03),word-level LSTM,P(<unk>) × character-bigram spelling,100,2000,9000,0.098,0.17,0.338,1896.2,1.89,1.0,3.1\n"
    "Embedding LSTM (04),word-level LSTM,P(<unk>) × character-bigram spelling,100,2000,9000,0.098,0.253,0.466,"
    "740.4,1.66,1.0,2.9\n"
    "smollm2-135m zero-shot,transformer,none needed: open vocabulary (bytes),100,2000,9000,0.0,0.076,0.175,"
    "25833.0,2.55,2.08,40.2\n"
)


def lstm_folder(write_file, folder: str, model_input: str, epochs: int, test_perplexity: float) -> None:
    layers = ["InputLayer", "Embedding" if model_input == "embedding" else "OneHot", "LSTM", "Dropout", "Dense"]
    settings = {"layers": layers, "parameters": 3_000_000, "units": 128, "epochs": epochs, "max_train_ads": None}
    state = {"settings": settings, "status": "complete", "epochs_run": epochs}
    write_file(f"runs/quick/models/{folder}/training.json", json.dumps(state))
    write_file(
        f"runs/quick/models/{folder}/metrics.csv",
        "model,split,accuracy,top5_accuracy,cross_entropy,perplexity,predictions\n"
        "trained,validation,0.2,0.4,4.8,120.5,7014\n"
        f"trained,test,0.2,0.4,4.7,{test_perplexity},7568\n"
        "untrained,test,0.0,0.0,10.0,22000.0,7568\n",
    )


@pytest.fixture
def quick_run(write_file):
    """A run folder as `adgen run --profile quick` leaves it, reduced to the files save_run reads."""
    summary = {
        "profile": "quick",
        "notebooks": [
            {"notebook": "04_embedding_lstm", "status": "ok", "seconds": 250.0, "output": "/x/04.ipynb"},
            {"notebook": "07_evaluation", "status": "ok", "seconds": 210.0, "output": "/x/07.ipynb"},
        ],
    }
    write_file("runs/quick/run_summary.json", json.dumps(summary))
    write_file("runs/quick/evaluation/comparison.csv", COMPARISON)
    lstm_folder(write_file, "lstm", "one_hot", 3, 112.4)
    lstm_folder(write_file, "embedding_lstm", "embedding", 5, 42.1)
    finetune = {
        "settings": {"model": "/cache/smollm2-135m", "train_texts": 300, "validation_texts": 100},
        "method": "full",
        "base_model": "/cache/smollm2-135m",
        "train_tokens": 12000,
        "steps": 29,
        "epochs": 1.0,
        "train_seconds": 240.0,
        "perplexity_before": 224.7,
        "perplexity_after": 24.0,
    }
    return write_file("runs/quick/models/finetuned/finetune.json", json.dumps(finetune)).parent.parent.parent


def test_save_run_keeps_the_comparison_times_and_training_figures_with_provenance(quick_run, tmp_path):
    command = ["python", "-m", "benchmarks.results", "save", "runs/quick"]
    path = save_run(quick_run, command, folder=tmp_path / "results")
    assert path == tmp_path / "results" / "run_quick.json"
    saved = json.loads(path.read_text())
    assert saved["measured"]["command"] == "python -m benchmarks.results save runs/quick"
    assert saved["measured"]["profile"] == saved["profile"] == "quick"
    machine = {"cpu", "instruction_sets", "cpu_cores", "memory_gib", "gpu", "platform", "python"}
    assert set(saved["measured"]["machine"]) == machine  # the instruction sets say which rows are like yours
    assert [n["notebook"] for n in saved["notebooks"]] == ["04_embedding_lstm", "07_evaluation"]
    assert "output" not in saved["notebooks"][0]  # a path of the machine that ran it, not a result
    assert [r["model"] for r in saved["comparison"]] == ["LSTM (03)", "Embedding LSTM (04)", "smollm2-135m zero-shot"]
    assert saved["comparison"][1]["per_word_perplexity"] == 740.4 and saved["comparison"][0]["ads"] == 100
    assert saved["models"]["03_lstm"]["test_perplexity"] == 112.4
    assert saved["models"]["04_embedding_lstm"]["epochs_run"] == 5
    assert saved["models"]["04_embedding_lstm"]["layers"][1] == "Embedding"
    assert saved["models"]["06_fine_tuning"]["base_model"] == "smollm2-135m"
    assert saved["models"]["06_fine_tuning"]["train_texts"] == 300


def test_the_command_saves_and_a_run_without_notebook_07_is_refused(quick_run, tmp_path, capsys):
    out = tmp_path / "saved"
    assert main(["save", str(quick_run), "--results-dir", str(out), "--profile", "mine"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "run_mine.json")
    (quick_run / "evaluation" / "comparison.csv").unlink()
    assert main(["save", str(quick_run), "--results-dir", str(out)]) == 2
    assert "comparison.csv does not exist" in capsys.readouterr().err


def test_provenance_says_when_where_and_by_which_command():
    result = with_provenance({"x": 1}, ["python", "-m", "benchmarks.bench", "data", "embedded"], profile="quick")
    assert result["x"] == 1
    assert result["measured"]["command"] == "python -m benchmarks.bench data embedded"
    assert result["measured"]["profile"] == "quick"
    assert result["measured"]["date"].endswith(" UTC") and result["measured"]["machine"]["cpu_cores"] >= 1
