"""Debug sessions and the signed probe commands that belong to them."""
