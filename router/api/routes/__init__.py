"""One module per resource; each holds thin routes over router.store and the service."""
