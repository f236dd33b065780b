"""Value types of the domain and how they are presented: no framework, no I/O."""
