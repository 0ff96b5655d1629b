"""Datasets: the vid2vid folder layout (sequences.py), clip transforms, semantic encoding, the
synthetic street scenes with exact flow (synthetic.py), datasets from any video (prepare.py) and
the dataset check behind `vid2vid check-data` (check.py)."""
