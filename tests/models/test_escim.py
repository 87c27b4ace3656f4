"""ESCIM's CVR models (models/escim.py). The counterfactual labeler they learn from is tested in
test_escim_labeler.py."""
from __future__ import annotations
