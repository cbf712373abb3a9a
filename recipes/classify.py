"""Fine-tune a sequence classifier.

    accelerate launch recipes/classify.py --config recipes/configs/classify/minilm_sst2.yaml [--key value ...]

Order as in transformers' run_glue.py: args -> seed -> data -> model -> tokenize -> train -> save.
"""

from transformers import set_seed

from hfkit import ClassifierConfig, ClassifierTrainer
from hfkit.cli import checkpoint_to_resume, setup_logging
from hfkit.data import DataArguments, load_classification_data, tokenize_dataset
from hfkit.modeling import ModelArguments, load_classifier, load_tokenizer
from hfkit.parsing import parse_args

ARG_TYPES = (ModelArguments, DataArguments, ClassifierConfig)


def main(argv: list[str] | None = None) -> ClassifierTrainer:
    model_args, data_args, config = parse_args(ARG_TYPES, argv)
    setup_logging(config)
    set_seed(config.seed)

    # The main process reads and tokenizes first; the others then load the cached result.
    with config.main_process_first(desc="loading data"):
        raw, labels = load_classification_data(data_args)
        tokenizer = load_tokenizer(model_args)
        data = tokenize_dataset(
            raw, tokenizer, data_args.text_column, data_args.text_pair_column, data_args.max_length
        )
    model = load_classifier(model_args, labels)

    trainer = ClassifierTrainer(
        model=model,
        args=config,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=checkpoint_to_resume(config))
    trainer.save_model()  # the best (or last) model, with its tokenizer, in output_dir
    trainer.save_state()
    if config.push_to_hub:
        trainer.push_to_hub()
    return trainer


if __name__ == "__main__":
    main()
