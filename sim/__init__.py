"""fetta.sim: golden models, the cycle-exact model and the RTL simulation harness."""
