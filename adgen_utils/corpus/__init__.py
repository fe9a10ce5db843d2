"""The corpus layer (data, text, eda, sequences); imports neither torch nor TensorFlow."""
