"""Signal processing shared by models, losses, oracles and metrics: STFTs, Wiener filtering."""
