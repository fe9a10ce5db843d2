# IPython startup file of the simulated Colab kernel: Colab's kernel imports google.colab at start.
import google.colab  # noqa: F401
