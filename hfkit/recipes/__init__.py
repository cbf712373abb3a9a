"""The recipes behind the `hfkit` command: one module per command, each thin (parse -> build -> train -> report).

Run them as `hfkit <command> ...`, `python -m hfkit <command> ...`, or `python recipes/<command>.py ...` in a
clone; their configs ship in configs/<command>/<model>_<variant>.yaml.
"""

# The registry: command -> what it does. `hfkit` (cli.py) and the config reference (reference.py) read it;
# each command is the module hfkit/recipes/<command>.py. Plain strings: `hfkit --help` imports no recipe.
COMMANDS = {
    "classify": "fine-tune a sequence classifier (in full, or LoRA / QLoRA adapters)",
    "distill": "distil a fine-tuned classifier into a smaller student; teacher vs student report",
    "compress": "prune / low-rank / quantize a trained classifier; every variant measured",
    "compare": "saved classifiers on the same rows: accuracy, F1, McNemar's paired test",
    "push": "build the upload folder (weights, tokenizer, model card) and push it to the Hub",
    "clm": "fine-tune or distil a causal LM; held-out perplexity before and after",
    "generate": "generate text with a causal LM (greedy or sampled, batched, streamed)",
    "export": "export a causal LM to OpenVINO for fast greedy CPU decoding (float32 or int8 weights)",
    "incremental": "update a trained classifier with new data or new classes without forgetting",
    "label": "label text with an instruction LLM: its label-word log-probs become a cached teacher",
}
TOOLS = {
    "configs": "list the shipped configs (names for --config)",
    "reference": "print the reference of every config key per command (Markdown)",
    "cp": "copy a shipped config to edit: hfkit cp distill/minilm_l3_sst2 my.yaml [--force]",
    "accelerate-config": "print the path of a shipped accelerate config (none: list them)",
}
