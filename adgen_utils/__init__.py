"""adgen_utils: the library behind the adgen notebooks and the ``adgen`` command.

Subpackages follow the stages of the series and keep heavy dependencies apart; a module imports
only from its own layer and the layers below it::

    apps/         cli (the adgen command), catalog (ads for a seller's CSV), bench (JSON benchmarks)
    series/       profiles, session (what every notebook does first), stages (rebuilding what a
                  notebook run alone needs), estimates, runner (papermill), sync, measured
    study/        evaluation (every model on one footing, notebook 07), compute (quality against
                  training compute), products and selection (ads a seller can paste), publishing (08)
    lstm/         Keras at the top: model, training, generation, admodel (notebooks 03-04)
    transformer/  torch at the top: pretrained, finetune, stream, admodel, aitextgen_worker (05-06)
    corpus/       neither torch nor TensorFlow: data, text, eda, sequences (notebooks 01-02)
    base          models (the one model interface), parameters (every notebook parameter, once),
                  layout (every file and folder name), errors, logs, hardware, spreadsheet, figures

Importing ``adgen_utils`` or any base or corpus module loads neither torch nor TensorFlow.
"""

__version__ = "0.1.0"
