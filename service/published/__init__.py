"""The CDG's published documents (issue 12): generated per convention version, public."""
