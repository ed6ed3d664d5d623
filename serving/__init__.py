"""How models leave: SavedModel export, a TF-Serving-compatible REST server and a client. Depends on zoo, never on training."""
