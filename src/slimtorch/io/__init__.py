"""Model specs, saving and loading."""
