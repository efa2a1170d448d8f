"""The state service: route resolution and version bundles for the workerd gateway.

It reads the projection (Redis, or the embedded store under `wdl dev`), keeps a
route cache that the projection's change feed invalidates, and is the only
place where tenant secrets are decrypted (docs/dataplane.md).
"""
