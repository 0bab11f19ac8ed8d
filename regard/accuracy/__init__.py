"""Accuracy audits on a deployer's own labelled photos (`regard audit`): `dataset.py` reads the photos
and pairs, `metrics.py` computes NIST's figures, `report.py` assembles the results and writes them,
`findings.py` says them in words, `html.py` renders the page, `schema.py` holds the report's JSON Schema
and its validator, `plots.py` draws the curves."""
