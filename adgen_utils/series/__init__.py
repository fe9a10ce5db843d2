"""Running the notebook series: profiles (what each profile changes), session (what every notebook
does first), stages (rebuilding what a notebook run alone needs), estimates (time and memory before
long work), runner (papermill) and sync (the notebooks' and README's generated parts).
"""
