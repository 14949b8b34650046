"""torchio data modules, the BIDS indexer and the phantom generator."""
