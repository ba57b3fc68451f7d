"""The event store: one interface (`base`), records (`events`), a module per backend."""
