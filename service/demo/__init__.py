"""Demonstration data built from the Tarn communes and EPCIs."""
