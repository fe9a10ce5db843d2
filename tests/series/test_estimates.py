"""Time and memory estimates: fitted to this machine's benchmarks, and the profiles fit the GPUs
they are for (simulated devices: no GPU is needed)."""

from types import SimpleNamespace

import pytest

from adgen_utils.hardware import Device
from adgen_utils.series import estimates

CPU = Device("cpu", "x86_64", None, None)
T4 = Device("cuda", "Tesla T4", (7, 5), 15.0)
L4 = Device("cuda", "NVIDIA L4", (8, 9), 22.5)
A100 = Device("cuda", "NVIDIA A100-SXM4-40GB", (8, 0), 40.0)
FREE_COLAB_SESSION = 3 * 3600


def lstm_config(**values):
    defaults = dict(
        input="embedding", loss="full", sampled=512, units=128, embedding_dim=128, batch_size=64, layers=1, epochs=1
    )
    return SimpleNamespace(**{**defaults, **values})


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(estimates.os, "cpu_count", lambda: 2)


@pytest.mark.parametrize(
    "model_input, loss, vocabulary, measured",
    [
        ("one_hot", "full", 22_892, 1_645),  # README: adgen bench lstm (a)
        ("embedding", "full", 22_892, 3_351),
        ("embedding", "sampled", 22_892, 21_568),
        ("embedding", "sampled", 65_166, 7_505),  # README: the scale run on the 321k-ad sample
    ],
)
def test_lstm_estimates_match_this_machines_benchmarks(two_cores, model_input, loss, vocabulary, measured):
    estimate = estimates.lstm_training(lstm_config(input=model_input, loss=loss), vocabulary, 1_000_000, 0, 64, CPU)
    assert 1_000_000 / estimate.seconds == pytest.approx(measured, rel=0.25)


def test_finetune_estimate_matches_this_machines_benchmark(two_cores):
    # README: adgen bench finetune, SmolLM2-135M packed blocks, 141.8 trained tokens/s
    estimate = estimates.finetune_training(134_515_008, 141_800, "full", device=CPU)
    assert estimate.seconds == pytest.approx(1000, rel=0.1)
    assert "this CPU (2 cores)" in str(estimate)


def test_faster_devices_estimate_less_time_and_precision_follows_the_rule():
    config = lstm_config(units=512, embedding_dim=256, layers=2, loss="sampled", sampled=2048, batch_size=256)
    seconds = [estimates.lstm_training(config, 100_000, 10**6, 10**5, 64, d).seconds for d in (CPU, T4, A100)]
    assert seconds[0] > seconds[1] > seconds[2]
    assert "Tesla T4 (fp16)" in str(estimates.transformer_scoring(10**8, 10**6, T4))
    assert "(bf16)" in str(estimates.transformer_scoring(10**8, 10**6, A100))


@pytest.mark.parametrize("notebook", ["03_lstm", "04_embedding_lstm", "06_fine_tuning"])
def test_the_full_profile_fits_a_free_t4_session_notebook_by_notebook(notebook):
    estimate = estimates.profile_estimate("full", notebook, T4)
    assert estimate.seconds < FREE_COLAB_SESSION * 0.8 and estimate.peak_gib < T4.memory_gib, str(estimate)


def test_the_large_fine_tune_needs_an_l4_or_an_a100():
    assert estimates.profile_estimate("large", "06_fine_tuning", T4).seconds > FREE_COLAB_SESSION
    assert estimates.profile_estimate("large", "06_fine_tuning", L4).seconds < FREE_COLAB_SESSION
    on_a100 = estimates.profile_estimate("large", "06_fine_tuning", A100)
    assert on_a100.method == "full" and on_a100.seconds < 3600 and on_a100.peak_gib < A100.memory_gib


def test_an_estimate_that_does_not_fit_says_so():
    huge = estimates.finetune_training(1_315_575_808, 10**6, "full", device=T4)
    assert "more than the 15 GiB there" in str(huge)


@pytest.mark.parametrize("seconds, text", [(3, "3 s"), (600, "10 min"), (9000, "2.5 h")])
def test_durations_read_naturally(seconds, text):
    assert estimates.format_duration(seconds) == text


def test_several_gpus_share_the_time_and_fsdp_the_memory():
    neo = estimates.KNOWN_PARAMETERS["EleutherAI/gpt-neo-1.3B"]
    t4, a100 = estimates.SERVERS["2 x T4 (Kaggle)"][0], estimates.SERVERS["8 x A100 80 GB"][0]
    one, two = (estimates.distributed_finetune(neo, 80_000, t4, n) for n in (1, 2))
    assert two.seconds == pytest.approx(one.seconds / (2 * estimates.DDP_EFFICIENCY))
    assert two.peak_gib == one.peak_gib and two.method == one.method == "qlora"  # each GPU holds the whole model
    ddp, sharded = (estimates.distributed_finetune(neo, 80_000, a100, 8, method="full", fsdp=f) for f in (False, True))
    assert sharded.peak_gib == pytest.approx(ddp.peak_gib - neo * 16 / 2**30 * 7 / 8)
    assert "8 x NVIDIA A100" in str(sharded) and "FSDP" in str(sharded)
