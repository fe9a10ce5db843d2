"""The study's answers, above both model families: every model on one footing and generation
quality (evaluation, notebook 07), and the model card and Hub push (publishing, notebook 08).
"""
