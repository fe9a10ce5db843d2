"""adgen_utils: the plumbing the adgen lessons stand on, and the ``adgen`` command.

Layers, lowest first (a module imports only its own layer and those below): base modules, corpus/
(neither torch nor TensorFlow), lstm/ (Keras) and transformer/ (torch), study/, then apps/ and lessons.
Importing ``adgen_utils`` or any base or corpus module loads neither torch nor TensorFlow."""

__version__ = "0.1.0"
