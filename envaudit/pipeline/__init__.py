"""One check pipeline over subjects: ``compose.check`` runs any subject (``subject.py``) the same
way. Import the modules themselves; this package imports nothing, so that importing one part never
pulls in the rest (or TensorFlow)."""
