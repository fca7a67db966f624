"""Customer instances at run time: the store behind the instances API (one customer's settings for one
integration), its version history, customer tokens, and rollouts between template versions."""
