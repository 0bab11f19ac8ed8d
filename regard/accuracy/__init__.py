"""Accuracy audits on a deployer's own labelled photos (`regard audit`): `dataset.py` reads the photos
and pairs, `metrics.py` computes NIST's figures, `report.py` assembles the results (with findings,
HTML and the JSON Schema), `plots.py` draws the curves."""
