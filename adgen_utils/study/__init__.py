"""Above both model families: the footing, evaluation, compute, the seller's rules and publishing."""
