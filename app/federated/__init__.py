"""Federated learning as pure functions over numpy arrays: partitions, strategies, the
virtual clock, devices and faults. No TensorFlow, no database, no HTTP: every rule here can
be tested against its formula alone."""
