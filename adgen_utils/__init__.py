"""adgen_utils: the library behind the adgen notebooks, one module per stage.

data (load, clean, split) -> text (tokens) -> eda (statistics, figures) ; runner and cli
execute the numbered notebooks with papermill.
"""

__version__ = "0.1.0"
