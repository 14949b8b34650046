"""Networks, the shared Lightning module, losses and metrics."""
