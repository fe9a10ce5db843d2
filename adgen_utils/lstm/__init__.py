"""The plumbing under the word-level LSTM lessons (Keras 3 on TensorFlow, imported at the top)."""

import os
import warnings

# Before any module here imports Keras: TensorFlow is its backend, and TensorFlow's C++ start-up
# noise stays out of notebooks and logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# many_to_many_dataset's batches shuffle themselves each epoch: fit's shuffle=True has nothing to do.
warnings.filterwarnings("ignore", message="`shuffle=True` was passed, but will be ignored")
