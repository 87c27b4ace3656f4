"""Which models exist, their family and the file that holds each: the one home of that list.

Read without torch (``liftlake models``, config checks that only need a name); the classes register
themselves with ``registry.register`` when their module is imported, and a class whose name is not
here, or a name here that its module does not register, is an error (tests/models/test_cvr.py).
"""
from __future__ import annotations

FAMILIES = ("cvr", "uplift")

# public name -> (module under liftlake.models, family)
MODELS: dict[str, tuple[str, str]] = {
    "naive": ("esmm", "cvr"),
    "esmm": ("esmm", "cvr"),
    "mtl_ips": ("escm2", "cvr"),
    "mtl_dr": ("escm2", "cvr"),
    "escm2_ips": ("escm2", "cvr"),
    "escm2_dr": ("escm2", "cvr"),
    "dcmt": ("dcmt", "cvr"),
    "dcmt_pd": ("dcmt", "cvr"),
    "dcmt_cf": ("dcmt", "cvr"),
    "escim_max": ("escim", "cvr"),
    "escim_ratio": ("escim", "cvr"),
    "s_learner": ("meta_learners", "uplift"),
    "t_learner": ("meta_learners", "uplift"),
    "tarnet": ("representation", "uplift"),
    "cfrnet": ("representation", "uplift"),
    "descn": ("representation", "uplift"),
    "drnet": ("dose_response", "uplift"),
    "vcnet": ("dose_response", "uplift"),
    "efin": ("interaction", "uplift"),
    "m3tn": ("interaction", "uplift"),
    "unimvt": ("unimvt", "uplift"),
    "hmum": ("hmum", "uplift"),
    "hum_no_kl": ("hmum", "uplift"),
}


def family_of(name: str) -> str | None:
    entry = MODELS.get(name)
    return entry[1] if entry else None


def sorted_names() -> list[tuple[str, str]]:
    """(name, family) by family, then name: the order ``liftlake models`` prints."""
    return sorted(((name, family) for name, (_, family) in MODELS.items()), key=lambda nf: (nf[1], nf[0]))
