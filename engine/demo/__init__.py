"""The synthetic demo dataset: rendered pre-filter parts with scratches, burns, missing geometry."""
