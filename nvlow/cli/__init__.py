"""nvlow command line (entry point ``nvlow``)."""
