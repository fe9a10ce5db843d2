"""The word-level LSTMs of notebooks 03-04 (Keras 3 on TensorFlow): the model and its measures
(model), training (training), writing ads (generation), the series' model interface (admodel).
Every module here imports Keras and TensorFlow at the top.
"""

import os

# Before any module here imports Keras: TensorFlow is its backend, and TensorFlow's C++ start-up
# noise stays out of notebooks and logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
