"""fetta.hw: the Amaranth components that become gates."""
