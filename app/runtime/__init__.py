"""Owns tf.lite.Interpreter objects: signatures, tensor codec, sessions. No DB, no HTTP."""
