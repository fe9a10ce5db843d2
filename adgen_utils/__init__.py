"""adgen_utils: the library behind the adgen notebooks, one module per stage.

data (load, clean, split) -> text (tokens) -> eda (statistics, figures) ; runner and cli
execute the numbered notebooks with papermill.
"""
__version__ = "0.1.0"

# The GitHub repository the notebooks' Colab badges and setup cells point at.
GITHUB_REPOSITORY = "adgen-project/adgen"
