"""streamrag."""
