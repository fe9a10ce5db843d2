"""The corpus layer: reading, cleaning and splitting the ads (data), word tokens and the vocabulary
(text), statistics and figures (eda), training examples as flat token arrays (sequences).
Imports neither torch nor TensorFlow.
"""
