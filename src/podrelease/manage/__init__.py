"""Authoring and housekeeping of a release root: new, promote, cleanup, volume-create."""
