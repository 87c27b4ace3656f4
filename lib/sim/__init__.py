"""The log simulator: seeded raw logs (exposures, clicks, conversions, treatments, responses, users, items)
with the ground truth real logs never carry (sim.truth, sim.truth_user)."""
